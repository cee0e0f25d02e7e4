"""What the reader export costs a publish, and that a reader on it never delays the run.

    .venv/bin/python benchmarks/bench_readers.py [--rows 200000]

Scores one day of ``--rows`` rows three ways and prints the publish step (``runs.details.steps``):
``results.reader_export: false``; ``true``; ``true`` with a reader holding ``catalog.duckdb`` open the whole time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sample_data.generate import generate  # noqa: E402
from scoring.config import load_config  # noqa: E402
from scoring.models.training import train_model  # noqa: E402
from scoring.run.pipeline import run_day  # noqa: E402

START, DAY = dt.date(2026, 3, 1), dt.date(2026, 3, 7)


def cfg_for(folder: Path, source: Path, store: Path, export: bool) -> object:
    folder.mkdir(exist_ok=True)
    raw = {"source": {"kind": "duckdb", "path": str(source), "table": "loan_applications",
                      "timestamp_column": "applied_at", "key_column": "application_id"},
           "model": {"store": str(store), "name": "loan_default", "alias": "champion"},
           "results": {"kind": "duckdb", "path": str(folder / "results.duckdb"),
                       "staging_dir": str(folder / "staging"), "reader_export": export},
           "training": {"label_column": "defaulted", "categorical": ["state", "loan_purpose", "home_ownership",
                                                                   "employment_type"]}}
    (folder / "scoring.yaml").write_text(yaml.safe_dump(raw))
    return load_config(folder / "scoring.yaml")


def steps(cfg: object) -> dict:
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        return json.loads(con.sql("SELECT details FROM runs ORDER BY started_at DESC LIMIT 1").fetchall()[0][0])["steps"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = Path(tempfile.mkdtemp(prefix="bench-readers-"))
    try:
        source = base / "source.duckdb"
        generate(source, START, 8, args.rows, seed=7)
        store = base / "models"
        train_model(cfg_for(base / "train", source, store, False), START, dt.date(2026, 3, 5))
        print(f"{args.rows:,} rows/day; seconds")
        print(f"{'case':<44}{'run':>8}{'publish':>9}{'lock wait':>11}")
        for name, export, reader in [("reader_export false", False, False), ("reader_export true", True, False),
                                     ("reader_export true, reader on catalog", True, True)]:
            cfg = cfg_for(base / name.replace(" ", "_").replace(",", ""), source, store, export)
            run_day(cfg, DAY)  # the catalog and files exist for the reader
            con = duckdb.connect(str(cfg.results.path.with_name("results_export") / "catalog.duckdb"),
                                 read_only=True) if reader else None
            if con:
                # The catalog's views name their files relative to its folder.
                con.execute(f"SET file_search_path = '{cfg.results.path.with_name('results_export')}'")
                con.sql("SELECT count(*) FROM predictions").fetchall()
            began = time.perf_counter()
            run_day(cfg, DAY)
            total = time.perf_counter() - began
            if con:
                con.close()
            s = steps(cfg)
            print(f"{name:<44}{total:>8.2f}{s['publish_s']:>9.2f}{s['publish_lock_wait_s']:>11.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
