"""Core benchmark (issue 12): ``scoring run``, whole process, against a whole-process limit and a naive peer.

Builds one DuckDB source (a 200,000-row training day, a ``--rows`` day, a ``--demo-rows`` day and the two days
of the memory pair ``--mem-rows``) and a second source whose table has an unused 100 KB text column
(``--wide-rows`` days), trains and registers the sample HistGradientBoosting Pipeline, then runs every
contender as its own process under ``/usr/bin/time`` (wall seconds, CPU seconds, peak RSS of that process
alone), ``--repeat`` rounds interleaved, and prints medians and ratios:

- limit: a program that imports duckdb and joblib, reads the day's key and model inputs from the same DuckDB
  into pandas, loads the model (one unpickle) and calls ``predict_proba`` in slices of the run's own chunk
  size. It publishes nothing, so it is a floor for any scorer that reads from the database.
- whole-frame: the same, one ``predict_proba`` on the whole frame (the second reference).
- peer: the semi-naive script a team writes by hand: whole day (every column) into pandas, one predict,
  bulk insert into a DuckDB table in one transaction.
- ``scoring run``: the project's CLI on the same day, whole process (imports, ledger, quality gate, drift,
  staging, checks, summaries and the atomic publish included).
- ``scoring run`` with ``scoring.engine: compiled`` (the version compiled and proven at build time,
  ``compiled_contender.compile_champion``) and the bare compiled chunked predict: the limit's program with the
  compiled predictor (``compiled_contender.compiled_limit``, shared with ``bench_compiled.py``). Their ratios
  (issue 26): CPU and wall against the limit (<= 0.6), the peer's wall against theirs (>= 2), peak RSS against
  the native run (no higher); every published score and every score of the bare compiled predict compared bit
  for bit with the native limit's.
- ``scoring --help``; the demo day (``scoring run`` and the limit); ``scoring run`` on the memory pair
  (peak RSS); ``scoring run`` on the wide days with a 32 MiB chunk budget, next to the model's own footprint
  (a process that loads the model and scores one chunk of the run's size: its peak RSS).

After the rounds the limit's scores of the big day are compared with the published predictions (max |diff|
over every row) and the ledger's counts checked (rows_in = scored + quarantined).

``--busy`` runs the same contenders beside a CPU-bound process (``python -c 'while True: pass'``, started by the
benchmark and killed by its pid) and says whether the compiled ``scoring run`` stays ahead of the peer.
``--only`` prints the medians (and the compiled ratios and checks when their contenders ran); with ``--data``
a second run reuses the built sources, e.g. ``--data DIR --busy --only limit,limit_compiled,run,run_compiled,peer``.

    .venv/bin/python benchmarks/bench_core.py [--rows 2000000] [--mem-rows 500000,5000000] [--demo-rows 5000]
        [--wide-rows 4000,40000] [--repeat 3] [--quick] [--busy] [--only a,b] [--data DIR]
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
SCORING = str(Path(sys.executable).parent / "scoring")

from compiled_contender import compile_champion, compiled_limit  # noqa: E402 - shared with bench_compiled.py
from contenders import BIG_DAY, TRAIN_DAY  # noqa: E402 - the same days as the other single-day benchmarks

DEMO_DAY = dt.date(2026, 6, 3)
MEM_DAYS = (dt.date(2026, 6, 4), dt.date(2026, 6, 5))
WIDE_DAYS = (dt.date(2026, 6, 6), dt.date(2026, 6, 7))
WIDE_BUDGET_MIB = 32
WIDE_BYTES = 100_000

# argv: source db, table, key, timestamp column, day, model file, comma-separated features, rows per chunk
# (0: the whole frame at once), output parquet ("" for none).
LIMIT = """
import sys, datetime as dt
import duckdb, joblib
db, table, key, ts, day, model_file, features, rows, out = sys.argv[1:]
features = features.split(","); rows = int(rows); start = dt.datetime.fromisoformat(day)
cols = ", ".join(f'"{c}"' for c in (features if key in features else [key, *features]))
with duckdb.connect(db, read_only=True) as con:
    frame = con.execute(f'SELECT {cols} FROM "{table}" WHERE "{ts}" >= $1 AND "{ts}" < $2',
                        [start, start + dt.timedelta(days=1)]).df()
model = joblib.load(model_file)
x = frame[features]
step = rows or len(x)
parts = [model.predict_proba(x.iloc[i:i + step])[:, 1] for i in range(0, len(x), step)]
if out:
    import numpy as np, pandas as pd
    pd.DataFrame({"source_key": frame[key].astype(str), "score": np.concatenate(parts)}).to_parquet(out)
"""

PEER = """
import sys, datetime as dt
import duckdb, joblib, pandas as pd
db, table, key, ts, day, model_file, features, out_db = sys.argv[1:]
features = features.split(","); start = dt.datetime.fromisoformat(day)
with duckdb.connect(db, read_only=True) as con:
    frame = con.execute(f'SELECT * FROM "{table}" WHERE "{ts}" >= $1 AND "{ts}" < $2',
                        [start, start + dt.timedelta(days=1)]).df()
model = joblib.load(model_file)
scores = model.predict_proba(frame[features])[:, 1]
out = pd.DataFrame({"source_key": frame[key].astype(str), "score": scores, "label": (scores >= 0.5).astype("int8"),
                    "day": start.date()})
with duckdb.connect(out_db) as con:
    con.execute("CREATE TABLE IF NOT EXISTS peer (source_key VARCHAR, score DOUBLE, label TINYINT, day DATE)")
    con.execute("BEGIN"); con.execute("DELETE FROM peer WHERE day = $1", [start.date()])
    con.execute("INSERT INTO peer SELECT * FROM out"); con.execute("COMMIT")
"""


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` as its own process under /usr/bin/time; its wall s, CPU s and peak RSS MiB.

    Raises SystemExit with the end of stderr when the process fails."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        proc = subprocess.run(["/usr/bin/time", "-q", "-f", "%e %U %S %M", "-o", report.name, *cmd],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd[:4])} ...\n{proc.stderr[-3000:]}")
        wall, user, system, rss_kib = report.read().split()[-4:]
    return {"wall_s": float(wall), "cpu_s": float(user) + float(system), "rss_mib": int(rss_kib) / 1024}


def build(folder: Path, rows: int, demo_rows: int, mem_rows: tuple[int, int], wide_rows: tuple[int, int]) -> dict:
    """Both sources, the two configurations and the registered model; returns what the contenders need."""
    import duckdb

    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.models.store import ModelStore
    from scoring.models.training import read_window, train_model
    from scoring.quality.suite import write_version_suite

    db = folder / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        days = ((TRAIN_DAY, 200_000), (BIG_DAY, rows), (DEMO_DAY, demo_rows), *zip(MEM_DAYS, mem_rows, strict=True))
        for i, (day, n) in enumerate(days):
            con.register("batch", generate_day(day, n, seed=11))
            con.execute(("CREATE TABLE loan_applications AS " if i == 0 else "INSERT INTO loan_applications ")
                        + "SELECT * FROM batch")
            con.unregister("batch")
    wide_db = folder / "wide.duckdb"
    with duckdb.connect(str(wide_db)) as con:
        for i, (day, n) in enumerate(zip(WIDE_DAYS, wide_rows, strict=True)):
            con.register("batch", generate_day(day, n, seed=12))
            # A long note per row, different in every row (the key is part of it), that the model never reads.
            con.execute(("CREATE TABLE loan_applications AS " if i == 0 else "INSERT INTO loan_applications ")
                        + f"SELECT *, repeat('note ', {WIDE_BYTES // 5 - 12}) || CAST(application_id AS VARCHAR) "
                        "AS notes FROM batch")
            con.unregister("batch")
    text = (ROOT / "scoring.yaml").read_text().replace("store: models", f"store: {folder / 'models'}")
    configs = {}
    for name, source, budget in (("main", db, None), ("compiled", db, None), ("wide", wide_db, WIDE_BUDGET_MIB)):
        cfg_text = (text.replace("path: sample_data/sample.duckdb", f"path: {source}")
                    .replace("path: results/results.duckdb", f"path: {folder / name}-results.duckdb")
                    .replace("staging_dir: results/staging", f"staging_dir: {folder / name}-staging"))
        if budget:
            cfg_text = cfg_text.replace("memory_budget_mib: 256", f"memory_budget_mib: {budget}")
        # The engine is set on every config: the default (auto) would score the compiled champion compiled.
        cfg_text += f"scoring:\n  engine: {'compiled' if name == 'compiled' else 'native'}\n"
        configs[name] = folder / f"{name}.yaml"
        configs[name].write_text(cfg_text)
    cfg = load_config(configs["main"])
    mv = train_model(cfg, TRAIN_DAY, TRAIN_DAY)
    write_version_suite(cfg, mv)
    compile_champion(ModelStore(cfg.model.store), mv, read_window(cfg, TRAIN_DAY, TRAIN_DAY))
    mv = ModelStore(cfg.model.store).resolve(cfg.model.name, "champion")
    return {"configs": configs, "db": str(db), "wide_db": str(wide_db), "model": str(mv.artifact),
            "features": ",".join(f["name"] for f in mv.features), "table": cfg.source.table,
            "key": cfg.source.key_column, "ts": cfg.source.timestamp_column, "folder": folder}


def last_run(results_db: Path) -> dict:
    """The newest ledger row of a results file."""
    import duckdb

    with duckdb.connect(str(results_db), read_only=True) as con:
        row = con.execute("SELECT run_id, status, rows_in, rows_scored, rows_rejected, details FROM runs "
                          "ORDER BY started_at DESC LIMIT 1").fetchone()
    details = json.loads(row[5]) if isinstance(row[5], str) else row[5]
    return {"run_id": row[0], "status": row[1], "rows_in": row[2], "scored": row[3], "quarantined": row[4],
            "details": details}


def compiled_check(results_db: Path, day: dt.date, native: str, compiled: str) -> list[str]:
    """Every score the compiled ``scoring run`` published for ``day`` (``results_db``) and the compiled limit wrote
    (parquet ``compiled``) against the native limit's (parquet ``native``), bit for bit; one line per check.

    Raises SystemExit when a score differs, a row is missing, or the ledger's engine or counts are wrong."""
    import duckdb
    import numpy as np
    import pandas as pd

    base = pd.read_parquet(native).set_index("source_key")["score"]
    ledger = last_run(results_db)
    with duckdb.connect(str(results_db), read_only=True) as con:
        published = con.execute("SELECT source_key, score FROM predictions WHERE day = $1", [day]).df()
    others = {"scoring run (compiled), published": (published.set_index("source_key")["score"], ledger["scored"]),
              "bare compiled chunked predict": (pd.read_parquet(compiled).set_index("source_key")["score"], len(base))}
    engine = ledger["details"].get("engine", {}).get("engine")
    if ledger["status"] != "success" or engine != "compiled" \
            or ledger["rows_in"] != ledger["scored"] + ledger["quarantined"]:
        raise SystemExit(f"the compiled run's ledger: status {ledger['status']}, engine {engine}, "
                         f"{ledger['rows_in']} in, {ledger['scored']} scored, {ledger['quarantined']} quarantined")
    lines = []
    for name, (scores, expected) in others.items():
        keys = base.index.intersection(scores.index)
        a = base.loc[keys].to_numpy(np.float64)
        c = scores.loc[keys].to_numpy(np.float64)
        same = int((a.view(np.uint64) == c.view(np.uint64)).sum())
        lines.append(f"{name}: {same:,} of {len(scores):,} scores bit-identical to the native predict_proba "
                     f"({expected:,} expected)")
        if not (same == len(keys) == len(scores) == expected):
            raise SystemExit("the compiled scores differ from the model's own output: " + lines[-1])
    lines.append(f"compiled run ledger: engine {engine}, {ledger['rows_in']:,} in = {ledger['scored']:,} scored + "
                 f"{ledger['quarantined']:,} quarantined")
    return lines


def compiled_targets(med: dict, busy: bool) -> None:
    """The issue 26 ratios of the compiled ``scoring run`` (``run_compiled``), when its contenders ran."""
    have = set(med)
    if "run_compiled" not in have:
        return
    rc = med["run_compiled"]

    def line(label: str, value: float, target: str, ok: bool) -> None:
        print(f"  {label:<58}{value:>8.3f}   [{target}] {'met' if ok else 'NOT met'}")

    print("\ntargets (issue 26, compiled engine" + (", a CPU-bound process running beside)" if busy else ")"))
    if "limit" in have:
        for m, unit in (("cpu_s", "CPU"), ("wall_s", "wall")):
            r = rc[m] / med["limit"][m]
            line(f"scoring run (compiled) / bare native chunked predict, {unit}", r, "<= 0.6", r <= 0.6)
    if "limit_compiled" in have and "limit" in have:
        line("bare compiled / bare native chunked predict, CPU",
             med["limit_compiled"]["cpu_s"] / med["limit"]["cpu_s"], "info", True)
    if "peer" in have:
        r = med["peer"]["wall_s"] / rc["wall_s"]
        line("peer / scoring run (compiled), wall", r, "> 1 (busy)" if busy else ">= 2", r > 1 if busy else r >= 2)
        if busy:
            print(f"  scoring run (compiled) {'stays ahead of' if r > 1 else 'falls behind'} the peer beside a "
                  "CPU-bound process")
    if "run" in have:
        r = rc["rss_mib"] / med["run"]["rss_mib"]
        line(f"peak RSS scoring run (compiled) / native ({rc['rss_mib']:.1f} / {med['run']['rss_mib']:.1f} MiB)",
             r, "<= 1", r <= 1)
        line("scoring run (compiled) / scoring run (native), wall", rc["wall_s"] / med["run"]["wall_s"], "info", True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the headline day")
    parser.add_argument("--mem-rows", default="500000,5000000", help="the memory pair's two day sizes")
    parser.add_argument("--demo-rows", type=int, default=5_000)
    parser.add_argument("--wide-rows", default="4000,40000", help="the wide table's two day sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke run of this file)")
    parser.add_argument("--only", default="", help="comma-separated contenders to run (default: all)")
    parser.add_argument("--busy", action="store_true", help="run the contenders beside a CPU-bound process "
                        "(python -c 'while True: pass', started here and killed by pid)")
    parser.add_argument("--data", default="", help="a folder to build the sources in, or reuse them from "
                        "(default: a temporary folder)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.mem_rows, args.wide_rows, args.repeat = 200_000, "50000,500000", "400,4000", 1
    mem_rows = tuple(int(n) for n in args.mem_rows.split(","))
    wide_rows = tuple(int(n) for n in args.wide_rows.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-core-") as scratch:
        tmp = args.data or scratch
        built = Path(tmp) / "built.json"
        if built.is_file():
            b = json.loads(built.read_text())
            b["configs"] = {k: Path(v) for k, v in b["configs"].items()}
        else:
            Path(tmp).mkdir(parents=True, exist_ok=True)
            print(f"building: {args.rows:,}-row day, demo {args.demo_rows:,}, memory pair {mem_rows}, wide "
                  f"{wide_rows} (+{WIDE_BYTES // 1000} KB text per row); training the sample model ...", flush=True)
            b = build(Path(tmp), args.rows, args.demo_rows, mem_rows, wide_rows)
            built.write_text(json.dumps(b, default=str))
        main_cfg, wide_cfg = str(b["configs"]["main"]), str(b["configs"]["wide"])
        if "compiled" not in b["configs"]:
            raise SystemExit(f"{tmp} was built before the compiled contender: use a new --data folder")
        compiled_cfg = str(b["configs"]["compiled"])
        results_db = Path(tmp) / "main-results.duckdb"

        def run(cfg: str, day: dt.date) -> list[str]:
            return [SCORING, "run", "--config", cfg, "--date", day.isoformat(), "--show", "0"]

        def limit(db: str, day: dt.date, rows: int, out: str = "") -> list[str]:
            return [sys.executable, "-c", LIMIT, db, b["table"], b["key"], b["ts"], day.isoformat(), b["model"],
                    b["features"], str(rows), out]

        # The run's own chunk size, from its ledger (one untimed run per config, also a warm-up of the caches).
        timed(run(main_cfg, BIG_DAY))
        warm = last_run(results_db)["details"]
        if warm.get("engine", {}).get("engine") != "native":
            raise SystemExit(f"the native run scored with {warm.get('engine')}: {tmp} was built before its config "
                             "set scoring.engine: native; use a new --data folder")
        chunk = warm["rows_per_chunk"]
        timed(run(compiled_cfg, BIG_DAY))
        wide_chunk = {}
        for day in WIDE_DAYS:
            timed(run(wide_cfg, day))
            wide_chunk[day] = last_run(Path(tmp) / "wide-results.duckdb")["details"]["rows_per_chunk"]
        print(f"the run's chunk size: {chunk:,} rows (256 MiB budget); wide days: {wide_chunk[WIDE_DAYS[0]]:,} rows "
              f"({WIDE_BUDGET_MIB} MiB budget)", flush=True)
        contenders = {
            "limit": limit(b["db"], BIG_DAY, chunk),
            "run": run(main_cfg, BIG_DAY),
            "run_compiled": run(compiled_cfg, BIG_DAY),
            "limit_compiled": [sys.executable, "-c", compiled_limit(LIMIT), *limit(b["db"], BIG_DAY, chunk)[3:-1],
                               str(Path(tmp) / "limit-compiled.parquet")],
            "peer": [sys.executable, "-c", PEER, b["db"], b["table"], b["key"], b["ts"], BIG_DAY.isoformat(),
                     b["model"], b["features"], str(Path(tmp) / "peer.duckdb")],
            "whole_frame": limit(b["db"], BIG_DAY, 0),
            "help": [SCORING, "--help"],
            "demo_run": run(main_cfg, DEMO_DAY),
            "demo_limit": limit(b["db"], DEMO_DAY, chunk),
            "mem_small": run(main_cfg, MEM_DAYS[0]),
            "mem_big": run(main_cfg, MEM_DAYS[1]),
            **{f"wide_{n}": run(wide_cfg, day) for day, n in zip(WIDE_DAYS, wide_rows, strict=True)},
            **{f"footprint_{n}": limit(b["wide_db"], day, wide_chunk[day])
               for day, n in zip(WIDE_DAYS, wide_rows, strict=True)},
        }
        if args.only:
            contenders = {k: v for k, v in contenders.items() if k in args.only.split(",")}
        figures: dict[str, list[dict]] = {k: [] for k in contenders}
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
        try:
            if hog:
                print(f"busy: a CPU-bound process (pid {hog.pid}: python -c 'while True: pass') runs beside "
                      "every contender", flush=True)
            for i in range(args.repeat):  # interleaved: drift in machine load hits every contender alike
                for name, cmd in contenders.items():
                    figures[name].append(timed(cmd))
                print(f"round {i + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1]['wall_s']:.2f}s" for k, v in
                                                                   figures.items()), flush=True)
        finally:
            if hog:
                os.kill(hog.pid, 9)
                hog.wait()
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall_s", "cpu_s", "rss_mib")}
               for k, v in figures.items()}
        native_out = str(Path(tmp) / "limit.parquet")
        if args.only:
            for k, m in med.items():
                print(f"{k:<28}{m['wall_s']:>9.2f} s{m['cpu_s']:>8.2f} CPU s{m['rss_mib']:>8.0f} MiB")
            compiled_targets(med, args.busy)
            if "run_compiled" in med and "limit_compiled" in med:
                timed(limit(b["db"], BIG_DAY, chunk, native_out))
                print("\n" + "\n".join(compiled_check(Path(tmp) / "compiled-results.duckdb", BIG_DAY, native_out,
                                                       str(Path(tmp) / "limit-compiled.parquet"))))
            return

        # Correctness: the limit's scores of the big day against the published partition, and the ledger.
        timed(run(main_cfg, BIG_DAY))
        ledger = last_run(results_db)
        out = native_out
        timed(limit(b["db"], BIG_DAY, chunk, out))
        import duckdb

        with duckdb.connect(str(results_db), read_only=True) as con:
            diff, joined = con.execute(
                "SELECT max(abs(p.score - l.score)), count(*) FROM predictions p JOIN read_parquet($1) l "
                "USING (source_key) WHERE p.day = $2", [out, BIG_DAY]).fetchone()

        rows_of = {"limit": args.rows, "run": args.rows, "run_compiled": args.rows, "limit_compiled": args.rows, "peer": args.rows, "whole_frame": args.rows,
                   "help": 0, "demo_run": args.demo_rows, "demo_limit": args.demo_rows,
                   "mem_small": mem_rows[0], "mem_big": mem_rows[1],
                   **{f"wide_{n}": n for n in wide_rows}, **{f"footprint_{n}": n for n in wide_rows}}
        print(f"\nmedians of {args.repeat} round(s), each contender its own process; {os.cpu_count()} CPUs, "
              f"load average now {os.getloadavg()[0]:.2f}" + (", a CPU-bound process beside" if args.busy else ""))
        print(f"{'contender':<28}{'rows':>11}{'wall s':>9}{'CPU s':>8}{'rows/s':>12}{'peak RSS MiB':>14}")
        for k, m in med.items():
            rate = f"{rows_of[k] / m['wall_s']:,.0f}" if rows_of[k] else ""
            print(f"{k:<28}{rows_of[k]:>11,}{m['wall_s']:>9.2f}{m['cpu_s']:>8.2f}{rate:>12}{m['rss_mib']:>14.0f}")

        def line(label: str, value: float, target: str, ok: bool) -> None:
            print(f"  {label:<58}{value:>8.3f}   [{target}] {'met' if ok else 'NOT met'}")

        print("\ntargets (issue 12)")
        r = med["run"]["wall_s"] / med["limit"]["wall_s"]
        line(f"scoring run / limit, {args.rows:,} rows, wall", r, "<= 1.15", r <= 1.15)
        line("scoring run / limit, CPU", med["run"]["cpu_s"] / med["limit"]["cpu_s"], "info", True)
        r = med["peer"]["wall_s"] / med["run"]["wall_s"]
        line("peer / scoring run, wall (speed-up over the peer)", r, ">= 2", r >= 2)
        r = med["mem_big"]["rss_mib"] / med["mem_small"]["rss_mib"]
        line(f"peak RSS {mem_rows[1]:,} / {mem_rows[0]:,} rows", r, "<= 1.15", r <= 1.15)
        line(f"demo day ({args.demo_rows:,} rows) scoring run, s", med["demo_run"]["wall_s"], "<= 2.5",
             med["demo_run"]["wall_s"] <= 2.5)
        line("demo day: scoring run / limit, wall", med["demo_run"]["wall_s"] / med["demo_limit"]["wall_s"],
             "info", True)
        line("scoring --help, s", med["help"]["wall_s"], "< 0.5", med["help"]["wall_s"] < 0.5)
        for n in wide_rows:
            over = med[f"wide_{n}"]["rss_mib"] - med[f"footprint_{n}"]["rss_mib"]
            line(f"wide {n:,} rows: RSS over the model's footprint, MiB", over, f"<= {WIDE_BUDGET_MIB}",
                 over <= WIDE_BUDGET_MIB)
        ok = diff is not None and diff <= 1e-9 and joined == ledger["scored"] \
            and ledger["rows_in"] == ledger["scored"] + ledger["quarantined"]
        print(f"\ncorrectness: {joined:,} published rows joined to the limit's scores, max |diff| {diff:.1e}; "
              f"ledger {ledger['rows_in']:,} in = {ledger['scored']:,} scored + {ledger['quarantined']:,} "
              f"quarantined; run steps {ledger['details'].get('steps')}")
        if not ok:
            raise SystemExit("the published scores differ from the model's own output")
        compiled_targets(med, args.busy)
        print("\n" + "\n".join(compiled_check(Path(tmp) / "compiled-results.duckdb", BIG_DAY, out,
                                               str(Path(tmp) / "limit-compiled.parquet"))))


if __name__ == "__main__":
    main()
