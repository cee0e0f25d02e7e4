"""Core benchmark: bare predict_proba vs the project's end-to-end run vs a semi-naive peer, in one run.

Builds a DuckDB source with a 2,000,000-row day (and a 500,000-row day for the memory comparison),
trains and registers the sample HistGradientBoosting Pipeline, then measures each contender in its own
fresh subprocess (so peak RSS is that contender's alone, read from wait4's rusage), ``--repeat`` times,
and prints medians and ratios. (d) is the data quality gate alone on the big day (see ``VALIDATE``), next
to the validation timings recorded inside the project runs (b).

    .venv/bin/python benchmarks/bench_core.py [--rows 2000000] [--small-rows 500000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIG_DAY = dt.date(2026, 6, 2)
SMALL_DAY = dt.date(2026, 6, 3)
TRAIN_DAY = dt.date(2026, 6, 1)

# Each contender is a small program run in a fresh interpreter; it prints {"seconds": ...}.
BARE = """
import json, sys, time, duckdb
from scoring.config import load_config
from scoring.models.store import ModelStore
cfg = load_config(sys.argv[1]); day = sys.argv[2]
ms = ModelStore(cfg.model.store); mv = ms.resolve(cfg.model.name, "champion"); model = ms.load(mv)
cols = [f["name"] for f in mv.features]
with duckdb.connect(str(cfg.source.path), read_only=True) as con:
    frame = con.sql("SELECT * FROM loan_applications WHERE CAST(applied_at AS DATE) = $1", params=[day]).to_df()
x = frame[cols]
t = time.perf_counter(); p = model.predict_proba(x)[:, 1]; s = time.perf_counter() - t
print(json.dumps({"seconds": s, "rows": len(p)}))
"""

PROJECT = """
import json, sys, time, datetime as dt
from scoring.config import load_config
from scoring.run.pipeline import run_day
from scoring.storage.results import open_results
cfg = load_config(sys.argv[1])
t = time.perf_counter(); r = run_day(cfg, dt.date.fromisoformat(sys.argv[2])); s = time.perf_counter() - t
details = open_results(cfg.results).query("SELECT details FROM runs WHERE run_id = $1", [r.run_id]).to_pylist()
timings = json.loads(details[0]["details"]).get("timings", {})
print(json.dumps({"seconds": s, "rows": r.rows_in, "scored": r.rows_scored, "timings": timings}))
"""

# The data quality work of a run on the same day, alone: the day is read into memory first (not timed), then
# the suite is loaded and compiled, the schema checked and duplicate keys found (one SQL scan), every chunk
# goes through the vectorized row gate, and the batch rules, error threshold and output checks (one scan of
# the staged predictions) run, exactly as ``run_day`` calls them.
VALIDATE = """
import json, sys, time, datetime as dt
import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
from scoring.run.sizing import chunk_rows
from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.models.store import ModelStore
from scoring.models.scorer import encoded_width
from scoring.storage.sources import open_source
from scoring.quality.gate import apply_gate, merge_stats
from scoring.quality.output_checks import check_predictions
from scoring.quality.batch_rules import evaluate
from scoring.quality.run_checks import prepare_quality
cfg = load_config(sys.argv[1]); interval = DataInterval.for_day(dt.date.fromisoformat(sys.argv[2]))
ms = ModelStore(cfg.model.store); mv = ms.resolve(cfg.model.name, "champion"); model = ms.load(mv)
with open_source(cfg.source) as source:
    size = chunk_rows(source.schema(), encoded_width(model, len(mv.features)), cfg.chunking.memory_budget_mib,
                      cfg.chunking.rows_per_chunk)
    chunks = [pa.Table.from_batches([b]) for b in source.batches(interval, size)]
    t0 = time.perf_counter(); quality = prepare_quality(cfg, mv, source, interval); t1 = time.perf_counter()
checked = [apply_gate(quality.gate, c) for c in chunks]
t2 = time.perf_counter()
files = []
for i, c in enumerate(checked):  # stand-in staged predictions (the output check's cost depends on row count)
    n = c.good.num_rows
    files.append(f"{sys.argv[3]}/pred-{i}.parquet")
    pq.write_table(pa.table({"source_key": pc.cast(c.good.column(cfg.source.key_column), pa.string()),
                             "score": np.random.default_rng(i).random(n), "label": np.zeros(n, np.int8)}),
                   files[-1], compression="lz4")
t3 = time.perf_counter()
rows_in = sum(c.num_rows for c in chunks); quarantined = sum(c.quarantine.num_rows for c in checked)
report = evaluate(quality.rules, merge_stats([c.stats for c in checked]), rows_in, quarantined,
                  cfg.validation.error_threshold, quality.source_columns)
problems = check_predictions(files, rows_in - quarantined)
t4 = time.perf_counter()
assert not problems, problems
print(json.dumps({"seconds": (t1 - t0) + (t2 - t1) + (t4 - t3), "prepare": t1 - t0, "gate": t2 - t1,
                  "conclude": t4 - t3, "rows": rows_in, "quarantined": quarantined,
                  "rules": len(quality.gate.rules), "chunks": len(chunks)}))
"""

PEER = """
import json, sys, time, datetime as dt, duckdb, pandas as pd
from scoring.config import load_config
from scoring.models.store import ModelStore
cfg = load_config(sys.argv[1]); day = dt.date.fromisoformat(sys.argv[2])
ms = ModelStore(cfg.model.store); mv = ms.resolve(cfg.model.name, "champion"); model = ms.load(mv)
cols = [f["name"] for f in mv.features]
t = time.perf_counter()
start = dt.datetime.combine(day, dt.time())
with duckdb.connect(str(cfg.source.path), read_only=True) as con:
    frame = con.sql("SELECT * FROM loan_applications WHERE applied_at >= $1 AND applied_at < $2",
                    params=[start, start + dt.timedelta(days=1)]).to_df()
scores = model.predict_proba(frame[cols])[:, 1]
out = pd.DataFrame({"source_key": frame["application_id"].astype(str), "score": scores,
                    "label": (scores >= 0.5).astype("int8"), "day": day})
with duckdb.connect(sys.argv[3]) as con:
    con.execute("CREATE TABLE IF NOT EXISTS peer (source_key VARCHAR, score DOUBLE, label TINYINT, day DATE)")
    con.execute("BEGIN"); con.execute("DELETE FROM peer WHERE day = $1", [day])
    con.execute("INSERT INTO peer SELECT * FROM out"); con.execute("COMMIT")
s = time.perf_counter() - t
print(json.dumps({"seconds": s, "rows": len(out)}))
"""


# The contender's own peak RSS: VmHWM of its address space. (wait4's ru_maxrss would not do: Linux carries
# the parent's high-water mark across fork + exec, so every child would report at least the parent's peak.)
HWM = """
for _line in open("/proc/self/status"):
    if _line.startswith("VmHWM:"):
        print(json.dumps({"vmhwm_mib": int(_line.split()[1]) / 1024}))
"""


def run_contender(code: str, *args: str) -> dict:
    """Run one contender in a fresh interpreter; return its figures plus its own peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code + HWM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    _, status, _usage = os.wait4(proc.pid, 0)
    out, errs = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"contender failed:\n{errs[-3000:]}")
    lines = out.strip().splitlines()
    figures = json.loads(lines[-2])
    figures["peak_rss_mib"] = json.loads(lines[-1])["vmhwm_mib"]
    return figures


def build(folder: Path, rows: int, small_rows: int) -> Path:
    import duckdb

    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    db = folder / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        for day, n in ((TRAIN_DAY, 200_000), (BIG_DAY, rows), (SMALL_DAY, small_rows)):
            batch = generate_day(day, n, seed=11)
            con.register("batch", batch)
            if day == TRAIN_DAY:
                con.execute("CREATE TABLE loan_applications AS SELECT * FROM batch")
            else:
                con.execute("INSERT INTO loan_applications SELECT * FROM batch")
            con.unregister("batch")
    cfg_text = (ROOT / "scoring.yaml").read_text()
    cfg_text = cfg_text.replace("path: sample_data/sample.duckdb", f"path: {db}")
    cfg_text = cfg_text.replace("store: models", f"store: {folder / 'models'}")
    cfg_text = cfg_text.replace("path: results/results.duckdb", f"path: {folder / 'results.duckdb'}")
    cfg_text = cfg_text.replace("staging_dir: results/staging", f"staging_dir: {folder / 'staging'}")
    cfg_path = folder / "scoring.yaml"
    cfg_path.write_text(cfg_text)
    cfg = load_config(cfg_path)
    mv = train_model(cfg, TRAIN_DAY, TRAIN_DAY)
    write_version_suite(cfg, mv)
    return cfg_path


def print_validation(results: dict[str, list[dict]], bare: float) -> None:
    """The data quality figures: the gate alone (d) and its parts inside the project runs (b), vs (a)."""
    val = results["validation"]
    part = {k: statistics.median(r[k] for r in val) for k in ("prepare", "gate", "conclude")}
    total = statistics.median(r["seconds"] for r in val)
    print(f"\ndata quality on the same {val[0]['rows']:,} rows ({val[0]['rules']} row rules, {val[0]['chunks']} chunks, "
          f"{val[0]['quarantined']:,} rows quarantined), medians")
    print(f"  (d) alone: prepare (suite, schema, duplicate-key SQL) {part['prepare']:.3f}s + row gate "
          f"{part['gate']:.3f}s + batch rules and output checks {part['conclude']:.3f}s = {total:.3f}s")
    print(f"  (d)/(a) time                 {total / bare:.3f}   [<= 0.15]")
    inrun = [r.get("timings", {}) for r in results["project"]]
    if inrun and all(inrun):
        med = {k: statistics.median(t.get(k, 0.0) for t in inrun) for k in inrun[0]}
        quality = med.get("prepare_s", 0) + med.get("gate_s", 0) + med.get("conclude_s", 0)
        print(f"  inside (b): prepare {med.get('prepare_s', 0):.3f}s + gate {med.get('gate_s', 0):.3f}s (sum over "
              f"chunks) + conclude {med.get('conclude_s', 0):.3f}s = {quality:.3f}s, ratio to (a) {quality / bare:.3f}")
        print(f"  inside (b), not validation: drift counts {med.get('drift_s', 0):.3f}s; GX Data Docs "
              f"{med.get('data_docs_s', 0):.3f}s (mostly importing great_expectations, a fixed cost per run)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--small-rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        folder = Path(tmp)
        print(f"building source: {args.rows:,} + {args.small_rows:,} rows, training the sample model ...")
        cfg = str(build(folder, args.rows, args.small_rows))
        results: dict[str, list[dict]] = {"bare": [], "project": [], "peer": [], "project_small": [],
                                          "validation": []}
        for i in range(args.repeat):  # interleaved, so drift in machine load hits every contender alike
            results["bare"].append(run_contender(BARE, cfg, str(BIG_DAY)))
            results["project"].append(run_contender(PROJECT, cfg, str(BIG_DAY)))
            results["peer"].append(run_contender(PEER, cfg, str(BIG_DAY), str(folder / "peer.duckdb")))
            results["project_small"].append(run_contender(PROJECT, cfg, str(SMALL_DAY)))
            results["validation"].append(run_contender(VALIDATE, cfg, str(BIG_DAY), tmp))
            print(f"round {i + 1}/{args.repeat}: " + ", ".join(
                f"{k} {v[-1]['seconds']:.2f}s" for k, v in results.items()))
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
        rss = {k: statistics.median(r["peak_rss_mib"] for r in v) for k, v in results.items()}
        rows = {"bare": args.rows, "project": args.rows, "peer": args.rows, "project_small": args.small_rows,
                "validation": args.rows}
        print(f"\n{'contender':<34}{'rows':>11}{'median s':>10}{'rows/s':>12}{'peak RSS MiB':>14}")
        names = {"bare": "(a) bare predict_proba (in memory)", "project": "(b) project run_day end to end",
                 "peer": "(c) semi-naive peer", "project_small": "(b) project run_day, small day",
                 "validation": "(d) data quality gate alone"}
        for key, label in names.items():
            print(f"{label:<34}{rows[key]:>11,}{med[key]:>10.2f}{rows[key] / med[key]:>12,.0f}{rss[key]:>14.0f}")
        print("\nratios (targets in brackets)")
        print(f"  (b)/(a) time                 {med['project'] / med['bare']:.3f}   [<= 1.15]")
        print(f"  (b)/(c) time                 {med['project'] / med['peer']:.3f}   [< 1]")
        print(f"  (b) peak RSS 2M / 500k       {rss['project'] / rss['project_small']:.3f}   [<= 1.15]")
        print_validation(results, med["bare"])


if __name__ == "__main__":
    main()
