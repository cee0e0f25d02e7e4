"""Report benchmark: a 90-day `scoring report --format html` over 100,000 and 1,000,000 predictions per day.

For each size it fills a DuckDB results file through the real ``publish()`` with the summaries the pipeline
adds (``summarize`` over staged Parquet chunks), day by day: predictions generated with DuckDB SQL, a few
quarantined rows, a model version change half-way, two failed runs and a drift table. Then, in the same run,
it times (medians of ``--repeat``, sizes alternating):

- ``scoring report --format html`` as a fresh process (what a user runs; includes interpreter start-up),
- the in-process ``load_report`` (what reads the results) and ``render_html`` (the charts),
- a naive peer: the same daily figures (counts, mean, positive rate, p10/p50/p90, 20-bin histogram) computed
  by scanning the predictions table for the 90 days, as a report without kept summaries would.

The larger size must take at most 1.2x the smaller for the report (the peer shows the growth avoided).

    .venv/bin/python benchmarks/bench_report.py [--sizes 100000,1000000] [--days 90] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_DAY = dt.date(2026, 1, 1)
FEATURES = ("age", "annual_income", "credit_score", "debt_to_income", "loan_amount", "state")
LIMIT = 1.2

NAIVE = """
SELECT day, count(*) AS n, avg(score) AS mean, avg(label) AS rate,
       quantile_cont(score, [0.1, 0.5, 0.9]) AS q,
       histogram(least(floor(score * 20), 19)::INT) AS bins
FROM predictions WHERE model_name = $1 AND day BETWEEN $2 AND $3 GROUP BY day ORDER BY day
"""


def _register_model(store: Path) -> None:
    """A small registered model, so the report has a training reference to compare against."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from scoring.models.reference import score_reference
    from scoring.models.store import ModelStore

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2))
    model = LogisticRegression().fit(x, (x[:, 0] + rng.normal(size=500) > 0.8).astype(int))
    artifact = store.parent / "model.joblib"
    store.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, artifact)
    ref = {"score": score_reference(rng.beta(1.2, 4.0, size=50_000))}
    models = ModelStore(store)
    for _ in range(2):
        models.register("bench_model", artifact, {"features": [], "reference": ref}, aliases=["champion"])


def build(folder: Path, rows: int, days: int) -> Path:
    """Results for ``days`` days of ``rows`` predictions each, published day by day with summaries."""
    import duckdb
    import yaml

    from scoring.config import load_config
    from scoring.reports.summaries import summarize
    from scoring.storage.results import RunRecord, open_results

    folder.mkdir(parents=True, exist_ok=True)
    _register_model(folder / "models")
    raw = {"source": {"kind": "duckdb", "path": str(folder / "unused.duckdb"), "table": "t",
                      "timestamp_column": "ts", "key_column": "id"},
           "model": {"store": str(folder / "models"), "name": "bench_model"},
           "results": {"kind": "duckdb", "path": str(folder / "results.duckdb"),
                       "staging_dir": str(folder / "staging")}}
    cfg_path = folder / "scoring.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg_path)
    store = open_results(cfg.results)
    store.ensure_schema()
    stage = folder / "staging"
    stage.mkdir(exist_ok=True)
    gen = duckdb.connect()
    for i in range(days):
        day = FIRST_DAY + dt.timedelta(days=i)
        version = 1 if i < days // 2 else 2
        started = dt.datetime(2026, 4, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
        pred, quar = stage / f"{day}.parquet", stage / f"{day}.q.parquet"
        gen.execute(f"SELECT setseed({(i % 97) / 100})")
        gen.execute(f"""COPY (SELECT source_key, score, CAST(score >= 0.5 AS TINYINT) AS label FROM (
                                   SELECT CAST({i * rows} + r AS VARCHAR) AS source_key,
                                          pow(random(), {2.0 + (i % 7) / 4}) AS score FROM range({rows}) t(r)))
                        TO '{pred}' (FORMAT parquet, COMPRESSION lz4)""")  # noqa: S608 - generated constants
        rejected = rows // 500 + i % 5
        gen.execute(f"""COPY (SELECT 'q' || r AS source_key,
                                   ['age', 'annual_income', 'state'][1 + r % 3] AS column_name,
                                   ['expect_column_values_to_be_between', 'expect_column_values_to_not_be_null',
                                    'expect_column_values_to_be_in_set'][1 + r % 3] AS rule,
                                   CAST(r AS VARCHAR) AS value, '{{}}' AS row_json FROM range({rejected}) t(r))
                        TO '{quar}' (FORMAT parquet)""")  # noqa: S608
        run = RunRecord(f"bench__{day}__{i}", day, "bench_model", version, started, trigger="bench")
        run.rows_in, run.rows_scored, run.rows_rejected = rows + rejected, rows, rejected
        if i in (days // 3, 2 * days // 3):  # a failed attempt before the successful run of that day
            failed = RunRecord(f"bench__{day}__failed", day, "bench_model", version,
                               started - dt.timedelta(seconds=30), trigger="bench")
            store.start_run(failed)
            failed.finish("failed", "SourceError: connection reset")
            store.fail_run(failed)
        store.start_run(run)
        run.finish("success")
        store.publish(run, [pred], [quar], extra=summarize(run, [pred], [quar]))
        pred.unlink()
        quar.unlink()
    gen.close()
    with store.connect() as con:  # the store created the drift table with the others (ensure_schema)
        con.execute("""INSERT INTO drift SELECT 'r', d.day, 'bench_model', 1, f.feature,
                              0.02 + 0.3 * (hash(d.day, f.feature) % 1000) / 1000.0 AS psi,
                              CASE WHEN psi >= 0.25 THEN 'alert' WHEN psi >= 0.1 THEN 'warn' ELSE 'ok' END
                       FROM (SELECT DISTINCT day FROM prediction_stats) d, unnest($1) AS f(feature)""",
                    [list(FEATURES)])
    from scoring.reports import refresh_reports

    refresh_reports(cfg)
    return cfg_path


def time_cli(cfg_path: Path, start: dt.date, end: dt.date, out: Path) -> float:
    exe = Path(sys.executable).with_name("scoring")
    t = time.perf_counter()
    subprocess.run([str(exe), "report", "--config", str(cfg_path), "--start", str(start), "--end", str(end),
                    "--format", "html", "--out", str(out)], check=True, capture_output=True)
    return time.perf_counter() - t


def time_in_process(cfg_path: Path, start: dt.date, end: dt.date) -> tuple[float, float]:
    from scoring.config import load_config
    from scoring.reports.data import load_report
    from scoring.reports.html import render_html
    from scoring.storage.results import open_results

    cfg = load_config(cfg_path)
    t = time.perf_counter()
    data = load_report(cfg, open_results(cfg.results), start, end)
    loaded = time.perf_counter() - t
    t = time.perf_counter()
    render_html(data)
    return loaded, time.perf_counter() - t


def time_naive(cfg_path: Path, start: dt.date, end: dt.date) -> float:
    import duckdb

    from scoring.config import load_config

    cfg = load_config(cfg_path)
    t = time.perf_counter()
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        con.sql(NAIVE, params=["bench_model", start, end]).fetchall()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="predictions per day, comma-separated")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the generated results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-report-"))
    start, end = FIRST_DAY, FIRST_DAY + dt.timedelta(days=args.days - 1)
    print(f"report over {args.days} days ({start} .. {end}); sizes {sizes}; {os.cpu_count()} CPUs; work dir {work}")
    configs = {}
    for rows in sizes:
        t = time.perf_counter()
        configs[rows] = build(work / f"rows-{rows}", rows, args.days)
        size_mb = (work / f"rows-{rows}" / "results.duckdb").stat().st_size / 2**20
        print(f"  built {rows:>9,} rows/day x {args.days} days = {rows * args.days:>11,} predictions "
              f"in {time.perf_counter() - t:6.1f}s ({size_mb:,.0f} MiB)")
    timings: dict[int, dict[str, list[float]]] = {r: {"cli": [], "load": [], "render": [], "naive": []}
                                                  for r in sizes}
    for rows in sizes:  # warm-up: file cache and imports, not measured
        time_cli(configs[rows], start, end, work / f"warm-{rows}.html")
        time_in_process(configs[rows], start, end)
        time_naive(configs[rows], start, end)
    for _ in range(args.repeat):
        for rows in sizes:  # alternate sizes so drift in machine load hits both
            timings[rows]["cli"].append(time_cli(configs[rows], start, end, work / f"report-{rows}.html"))
            load, render = time_in_process(configs[rows], start, end)
            timings[rows]["load"].append(load)
            timings[rows]["render"].append(render)
            timings[rows]["naive"].append(time_naive(configs[rows], start, end))
    med = {r: {k: statistics.median(v) for k, v in t.items()} for r, t in timings.items()}
    print(f"\nmedians of {args.repeat} (seconds)")
    print(f"{'predictions/day':>16} {'scoring report html':>20} {'load_report':>12} {'render_html':>12} "
          f"{'naive scan peer':>16} {'html KiB':>9}")
    for rows in sizes:
        m = med[rows]
        kib = (work / f"report-{rows}.html").stat().st_size / 1024
        print(f"{rows:>16,} {m['cli']:>20.3f} {m['load']:>12.4f} {m['render']:>12.3f} {m['naive']:>16.3f} "
              f"{kib:>9.0f}")
    small, large = sizes[0], sizes[-1]
    ratio = med[large]["cli"] / med[small]["cli"]
    print(f"\nratio {large:,} / {small:,} rows per day: scoring report html {ratio:.3f}x "
          f"(limit {LIMIT}x); load_report {med[large]['load'] / med[small]['load']:.3f}x; "
          f"naive scan peer {med[large]['naive'] / med[small]['naive']:.2f}x")
    print(json.dumps({"sizes": sizes, "days": args.days, "medians": med, "ratio": ratio}, default=str))
    ok = ratio <= LIMIT
    print("PASS" if ok else "FAIL", f"- the larger size takes {ratio:.3f}x the smaller")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
