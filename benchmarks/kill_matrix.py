"""Kill matrix: SIGKILL a real `scoring run` process at each named stage, then rerun, and print stage x outcome.

    .venv/bin/python benchmarks/kill_matrix.py [--rows-per-day 3000] [--postgres postgresql://postgres@127.0.0.1/test]

For every stage of ``scoring.storage.faults.STAGES``: publish a day once (the "old" partition), run
``python -m scoring.cli run`` for the same day with ``SCORING_FAULT=<stage>``, look at the partition and the
ledger, rerun the day normally, and check the rerun converged (its rows published, scores equal to the
model's own predict_proba within 1e-9, no ``running`` row, no staging left).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import joblib
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sample_data.generate import generate  # noqa: E402
from scoring.config import load_config  # noqa: E402
from scoring.models.training import train_model  # noqa: E402
from scoring.run.pipeline import run_day  # noqa: E402
from scoring.storage.faults import STAGES  # noqa: E402
from scoring.storage.results import open_results  # noqa: E402

START, DAY = dt.date(2026, 3, 1), dt.date(2026, 3, 7)


def config(folder: Path, source: Path, store: Path, pg: str | None) -> Path:
    results = ({"kind": "postgres", "url": pg, "schema": f"killmatrix_{uuid.uuid4().hex[:8]}"} if pg else
               {"kind": "duckdb", "path": str(folder / "results.duckdb")})
    raw = {"source": {"kind": "duckdb", "path": str(source), "table": "loan_applications",
                      "timestamp_column": "applied_at", "key_column": "application_id"},
           "model": {"store": str(store), "name": "loan_default", "alias": "champion"},
           "results": {**results, "staging_dir": str(folder / "staging")},
           "training": {"label_column": "defaulted", "categorical": ["state", "loan_purpose", "home_ownership",
                                                                   "employment_type"]}}
    path = folder / "scoring.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def one_stage(stage: str, base: Path, source: Path, store: Path, pg: str | None, chunk: int) -> list[str]:
    folder = base / stage
    folder.mkdir()
    cfg_path = config(folder, source, store, pg)
    cfg = load_config(cfg_path)
    old = run_day(cfg, DAY, rows_per_chunk=chunk)
    env = {**os.environ, "SCORING_FAULT": stage, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "scoring.cli", "run", "-c", str(cfg_path), "--date", str(DAY),
                           "--rows-per-chunk", str(chunk), "--show", "0"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    killed_s = time.monotonic() - started
    results = open_results(cfg.results)
    runs = results.runs(limit=10).to_pylist()
    dead = runs[0]
    ids = set(results.predictions(DAY, cfg.model.name).column("run_id").to_pylist())
    partition = "old" if ids == {old.run_id} else "new" if ids == {dead["run_id"]} else f"MIXED {ids}"
    staged_after_kill = sum(1 for p in cfg.results.staging_dir.rglob("*.parquet"))
    again = run_day(cfg, DAY, rows_per_chunk=chunk)
    runs = {r["run_id"]: r for r in results.runs(limit=10).to_pylist()}
    pred = results.predictions(DAY, cfg.model.name).to_pandas()
    model = joblib.load(store / "loan_default" / "1" / "model.joblib")
    with __import__("duckdb").connect(str(source), read_only=True) as con:
        src = con.sql("SELECT * FROM loan_applications WHERE applied_at >= $1 AND applied_at < $2",
                      params=[dt.datetime.combine(DAY, dt.time()), dt.datetime.combine(DAY, dt.time())
                              + dt.timedelta(days=1)]).to_df()
    expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
    exact = np.abs(pred.set_index("source_key")["score"] - pred["source_key"].map(expected).to_numpy()).max() <= 1e-9
    converged = (set(pred["run_id"]) == {again.run_id} and exact and pred["source_key"].is_unique
                 and again.rows_in == len(pred) + again.rows_rejected
                 and all(r["status"] != "running" for r in runs.values()))
    left = sum(1 for p in cfg.results.staging_dir.rglob("*") if p.is_file() and p.name != ".lock")
    import json

    reused = json.loads(runs[again.run_id]["details"] or "{}").get("chunks_reused", 0)
    exit_text = "SIGKILL" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
    return [stage, exit_text, f"{killed_s:.1f}", partition, str(staged_after_kill),
            runs[dead["run_id"]]["status"], str(reused), "yes" if converged else "NO", str(left)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=1000, help="rows per chunk (3 chunks a day by default)")
    parser.add_argument("--postgres", default=None, help="results in PostgreSQL at this URL instead of DuckDB")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = Path(tempfile.mkdtemp(prefix="kill-matrix-"))
    try:
        source = base / "source.duckdb"
        generate(source, START, 8, args.rows_per_day, seed=7)
        store = base / "models"
        train_model(load_config(config(base, source, store, None)), START, dt.date(2026, 3, 5))
        rows = [one_stage(s, base, source, store, args.postgres, args.chunk) for s in STAGES]
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if args.postgres:  # drop the throwaway schemas this script created
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as con:
                for (name,) in con.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'killmatrix\\_%'"
                                           ).fetchall():
                    con.execute(f'DROP SCHEMA "{name}" CASCADE')
    head = ["stage", "process", "secs", "partition after kill", "staged files left by kill",
            "killed attempt after rerun", "chunks reused", "rerun converged", "staging files left"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(f"kill matrix: results on {'PostgreSQL' if args.postgres else 'DuckDB'}, {args.rows_per_day} rows/day, "
          f"{args.chunk} rows/chunk")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
