"""Core benchmark: bare predict_proba vs the project's end-to-end run vs a semi-naive peer, in one run.

Builds a DuckDB source with a 2,000,000-row day (and a 500,000-row day for the memory comparison),
trains and registers the sample HistGradientBoosting Pipeline, then measures each contender in its own
fresh subprocess (so peak RSS is that contender's alone, read from wait4's rusage), ``--repeat`` times,
and prints medians and ratios.

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
from scoring.model_store import ModelStore
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
from scoring.pipeline import run_day
cfg = load_config(sys.argv[1])
t = time.perf_counter(); r = run_day(cfg, dt.date.fromisoformat(sys.argv[2])); s = time.perf_counter() - t
print(json.dumps({"seconds": s, "rows": r.rows_in, "scored": r.rows_scored}))
"""

PEER = """
import json, sys, time, datetime as dt, duckdb, pandas as pd
from scoring.config import load_config
from scoring.model_store import ModelStore
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


def run_contender(code: str, *args: str) -> dict:
    """Run one contender in a fresh interpreter; return its figures plus its own peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, errs = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"contender failed:\n{errs[-3000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    figures["peak_rss_mib"] = usage.ru_maxrss / 1024
    return figures


def build(folder: Path, rows: int, small_rows: int) -> Path:
    import duckdb

    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.training import train_model

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
    train_model(load_config(cfg_path), TRAIN_DAY, TRAIN_DAY)
    return cfg_path


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
        results: dict[str, list[dict]] = {"bare": [], "project": [], "peer": [], "project_small": []}
        for i in range(args.repeat):  # interleaved, so drift in machine load hits every contender alike
            results["bare"].append(run_contender(BARE, cfg, str(BIG_DAY)))
            results["project"].append(run_contender(PROJECT, cfg, str(BIG_DAY)))
            results["peer"].append(run_contender(PEER, cfg, str(BIG_DAY), str(folder / "peer.duckdb")))
            results["project_small"].append(run_contender(PROJECT, cfg, str(SMALL_DAY)))
            print(f"round {i + 1}/{args.repeat}: " + ", ".join(
                f"{k} {v[-1]['seconds']:.2f}s" for k, v in results.items()))
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
        rss = {k: statistics.median(r["peak_rss_mib"] for r in v) for k, v in results.items()}
        rows = {"bare": args.rows, "project": args.rows, "peer": args.rows, "project_small": args.small_rows}
        print(f"\n{'contender':<34}{'rows':>11}{'median s':>10}{'rows/s':>12}{'peak RSS MiB':>14}")
        names = {"bare": "(a) bare predict_proba (in memory)", "project": "(b) project run_day end to end",
                 "peer": "(c) semi-naive peer", "project_small": "(b) project run_day, small day"}
        for key, label in names.items():
            print(f"{label:<34}{rows[key]:>11,}{med[key]:>10.2f}{rows[key] / med[key]:>12,.0f}{rss[key]:>14.0f}")
        print("\nratios (targets in brackets)")
        print(f"  (b)/(a) time                 {med['project'] / med['bare']:.3f}   [<= 1.15]")
        print(f"  (b)/(c) time                 {med['project'] / med['peer']:.3f}   [< 1]")
        print(f"  (b) peak RSS 2M / 500k       {rss['project'] / rss['project_small']:.3f}   [<= 1.15]")


if __name__ == "__main__":
    main()
