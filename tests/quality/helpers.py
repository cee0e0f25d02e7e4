"""Helpers for the data quality tests: dirty copies of the sample source, results and suite files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd

CLEAN_DAY = dt.date(2026, 3, 6)  # no categorical levels unseen in training (those start on 2026-03-07)
KEY = "application_id"


def dirty_source(folder: Path, sample_db: Path, *statements: str, name: str = "src.duckdb") -> Path:
    """A copy of the sample source in ``folder`` with ``statements`` (SQL) applied to it."""
    db = folder / name
    with duckdb.connect(str(db)) as con:
        con.execute(f"ATTACH '{sample_db}' AS s (READ_ONLY)")
        con.execute("CREATE TABLE loan_applications AS SELECT * FROM s.loan_applications")
        con.execute("DETACH s")
        for sql in statements:
            con.execute(sql)
    return db


def day_filter(day: dt.date) -> str:
    """A SQL condition selecting one day of the sample's applied_at."""
    return f"CAST(applied_at AS DATE) = DATE '{day.isoformat()}'"


def keys_where(db: Path, condition: str) -> set[str]:
    """Source keys (as text) of rows matching ``condition``."""
    with duckdb.connect(str(db), read_only=True) as con:
        return {str(r[0]) for r in con.sql(f"SELECT {KEY} FROM loan_applications WHERE {condition}").fetchall()}


def rows(results: Path, sql: str, params: list | None = None) -> pd.DataFrame:
    with duckdb.connect(str(results), read_only=True) as con:
        return con.sql(sql, params=params).to_df()


def quarantine(results: Path, run_id: str | None = None) -> pd.DataFrame:
    if run_id is None:
        return rows(results, "SELECT * FROM quarantine ORDER BY source_key")
    return rows(results, "SELECT * FROM quarantine WHERE run_id = $1 ORDER BY source_key", [run_id])


def last_run(results: Path) -> dict:
    """The newest ledger row, with ``details`` parsed."""
    row = rows(results, "SELECT * FROM runs ORDER BY started_at DESC LIMIT 1").iloc[0].to_dict()
    row["details"] = json.loads(row["details"]) if row["details"] else {}
    return row


def edit_suite(path: Path, change) -> None:
    """Apply ``change(expectation) -> None`` to every expectation of the suite file at ``path``."""
    suite = json.loads(path.read_text())
    for exp in suite["expectations"]:
        change(exp)
    path.write_text(json.dumps(suite, indent=2))
