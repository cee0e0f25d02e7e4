"""PostgreSQL benchmark: the project's extraction vs the COPY limit, and end to end vs the DuckDB source.

Builds the bench_core DuckDB source and model (a 2,000,000-row day, seeded), loads the same rows into a
throwaway PostgreSQL schema with binary COPY (ADBC ingest), then measures in one run, each contender in
its own fresh interpreter (peak RSS from wait4), interleaved over ``--repeat`` rounds:

    copy-text    COPY (SELECT * ... day) TO STDOUT into /dev/null (psycopg): the practical limit
    copy-binary  the same with FORMAT binary
    extract      PostgresSource.batches() of the day, at the run's chunk size (Arrow batches, no scoring)
    e2e-duckdb   run_day, DuckDB source -> DuckDB results
    e2e-pg       run_day, PostgreSQL source -> DuckDB results
    e2e-pg-pg    run_day, PostgreSQL source -> PostgreSQL results

    .venv/bin/python benchmarks/bench_postgres.py [--rows 2000000] [--repeat 3] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from contenders import BIG_DAY, TRAIN_DAY, build, run_contender  # noqa: E402

DEFAULT_URL = os.environ.get("SCORING_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET = 1.5

COPY = """
import json, os, sys, time, datetime as dt, psycopg
from psycopg import sql
url, schema, day, fmt = sys.argv[1:5]
start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
query = sql.SQL("COPY (SELECT * FROM {}.loan_applications WHERE applied_at >= {} AND applied_at < {}) TO STDOUT"
                + (" (FORMAT binary)" if fmt == "binary" else "")).format(
    sql.Identifier(schema), sql.Literal(start), sql.Literal(start + dt.timedelta(days=1)))
t = time.perf_counter(); size = 0
with psycopg.connect(url) as con, con.cursor() as cur, open(os.devnull, "wb") as sink:
    with cur.copy(query) as copy:
        for data in copy:
            size += sink.write(data)
s = time.perf_counter() - t
print(json.dumps({"seconds": s, "bytes": size}))
"""

EXTRACT = """
import json, sys, time, datetime as dt
from scoring.run.sizing import chunk_rows
from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.models.store import ModelStore
from scoring.quality.schema_check import check_schema
from scoring.models.scorer import encoded_width
from scoring.storage.sources import open_source
cfg = load_config(sys.argv[1]); day = dt.date.fromisoformat(sys.argv[2])
ms = ModelStore(cfg.model.store); mv = ms.resolve(cfg.model.name, "champion"); model = ms.load(mv)
t = time.perf_counter(); n = batches = 0
with open_source(cfg.source) as src:
    columns = check_schema(src.schema(), mv.features, cfg.source.key_column)
    rows = chunk_rows(src.schema(), encoded_width(model, len(columns)), cfg.chunking.memory_budget_mib)
    for batch in src.batches(DataInterval.for_day(day), rows):
        n += batch.num_rows; batches += 1
s = time.perf_counter() - t
print(json.dumps({"seconds": s, "rows": n, "batches": batches, "rows_per_chunk": rows}))
"""

PROJECT = """
import json, sys, time, datetime as dt
from scoring.config import load_config
from scoring.run.pipeline import run_day
cfg = load_config(sys.argv[1])
t = time.perf_counter(); r = run_day(cfg, dt.date.fromisoformat(sys.argv[2])); s = time.perf_counter() - t
print(json.dumps({"seconds": s, "rows": r.rows_in, "scored": r.rows_scored}))
"""


def load_postgres(url: str, schema: str, rows: int, days: tuple | None = None, train_rows: int = 200_000) -> None:
    """The bench days (same seed as bench_core; ``days`` = (training day, big day) to pick others) in
    ``schema.loan_applications``, loaded with binary COPY."""
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    from sample_data.generate import generate_day

    ddl = ("application_id bigint NOT NULL, applied_at timestamptz NOT NULL, age double precision, "
           "annual_income double precision, loan_amount double precision, credit_score double precision, "
           "debt_to_income double precision, employment_years double precision, open_accounts double precision, "
           "delinquencies double precision, state text, loan_purpose text, home_ownership text, "
           "employment_type text, defaulted smallint")
    with pg.connect(url) as con, con.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        cur.execute(f'CREATE TABLE "{schema}".loan_applications ({ddl})')
        for day, n in zip(days or (TRAIN_DAY, BIG_DAY), (train_rows, rows), strict=True):
            table = generate_day(day, n, seed=11)
            table = table.set_column(1, "applied_at", table.column("applied_at").cast(pa.timestamp("us", "UTC")))
            for batch in table.to_batches(max_chunksize=250_000):
                cur.adbc_ingest("loan_applications", batch, mode="append", db_schema_name=schema)
        cur.execute(f'ALTER TABLE "{schema}".loan_applications ADD PRIMARY KEY (application_id)')
        cur.execute(f'CREATE INDEX ON "{schema}".loan_applications (applied_at)')
        con.commit()
        cur.execute(f'ANALYZE "{schema}".loan_applications')
        con.commit()


def drop_schemas(url: str, *schemas: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as con:
        for schema in schemas:
            con.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def variant(cfg_path: Path, name: str, source: dict | None = None, results: dict | None = None) -> str:
    raw = yaml.safe_load(cfg_path.read_text())
    if source:
        raw["source"] = {**raw["source"], **source}
        raw["source"].pop("path", None)
    raw["results"] = {**raw["results"], "path": str(cfg_path.parent / f"{name}.duckdb"),
                      "staging_dir": str(cfg_path.parent / f"staging-{name}"), **(results or {})}
    out = cfg_path.parent / f"{name}.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL URL (a throwaway schema is created)")
    args = parser.parse_args()
    schema = f"bench_pg_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        folder = Path(tmp)
        try:
            print(f"building: {args.rows:,}-row day in DuckDB and PostgreSQL ({schema}), training the model ...")
            # Built in a child process: a forked contender inherits its parent's peak RSS, so the parent
            # must stay small for the RSS column to be each contender's own.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                base = pool.apply(build, (folder, args.rows, 1_000))
                pool.apply(load_postgres, (args.url, schema, args.rows))
            pg_source = {"kind": "postgres", "url": args.url, "table": f"{schema}.loan_applications"}
            cfgs = {"e2e-duckdb": variant(base, "duck"), "e2e-pg": variant(base, "pg", pg_source),
                    "e2e-pg-pg": variant(base, "pgpg", pg_source, {"kind": "postgres", "url": args.url,
                                                                   "schema": f"{schema}_results"})}
            day = str(BIG_DAY)
            contenders = {
                "copy-text": (COPY, args.url, schema, day, "text"),
                "copy-binary": (COPY, args.url, schema, day, "binary"),
                "extract": (EXTRACT, cfgs["e2e-pg"], day),
                **{name: (PROJECT, path, day) for name, path in cfgs.items()},
            }
            results: dict[str, list[dict]] = {k: [] for k in contenders}
            for i in range(args.repeat):  # interleaved: machine load drift hits every contender alike
                for name, (code, *argv) in contenders.items():
                    results[name].append(run_contender(code, *argv))
                print(f"round {i + 1}/{args.repeat}: " + ", ".join(
                    f"{k} {v[-1]['seconds']:.2f}s" for k, v in results.items()))
        finally:
            drop_schemas(args.url, schema, f"{schema}_results")
    report(results, args.rows)


def report(results: dict[str, list[dict]], rows: int) -> None:
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    rss = {k: statistics.median(r["peak_rss_mib"] for r in v) for k, v in results.items()}
    labels = {"copy-text": "COPY (SELECT ...) TO STDOUT, text", "copy-binary": "COPY ... (FORMAT binary)",
              "extract": "project extraction (Arrow batches)", "e2e-duckdb": "run_day: DuckDB -> DuckDB",
              "e2e-pg": "run_day: PostgreSQL -> DuckDB", "e2e-pg-pg": "run_day: PostgreSQL -> PostgreSQL"}
    print(f"\n{'contender (median of ' + str(len(results['extract'])) + ')':<40}{'rows':>11}{'s':>9}"
          f"{'rows/s':>12}{'peak RSS MiB':>14}")
    for key, label in labels.items():
        print(f"{label:<40}{rows:>11,}{med[key]:>9.2f}{rows / med[key]:>12,.0f}{rss[key]:>14.0f}")
    extra = results["extract"][0]
    print(f"\nextraction: {extra['batches']} batches of <= {extra['rows_per_chunk']:,} rows; COPY text "
          f"{results['copy-text'][0]['bytes'] / 2**20:,.0f} MiB")
    limit = min(med["copy-text"], med["copy-binary"])
    print("ratios (target in brackets)")
    print(f"  extraction / COPY text          {med['extract'] / med['copy-text']:.3f}")
    print(f"  extraction / fastest COPY       {med['extract'] / limit:.3f}   [<= {TARGET}]")
    print(f"  e2e PostgreSQL / DuckDB source  {med['e2e-pg'] / med['e2e-duckdb']:.3f}")
    print(f"  e2e PG -> PG / DuckDB -> DuckDB {med['e2e-pg-pg'] / med['e2e-duckdb']:.3f}")


if __name__ == "__main__":
    main()
