"""Test helpers reading real files: source rows of a day and published predictions."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import duckdb
import pandas as pd


def source_day(db: Path, day: dt.date, table: str = "loan_applications") -> pd.DataFrame:
    start = dt.datetime.combine(day, dt.time())
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table} WHERE applied_at >= $1 AND applied_at < $2",
                       params=[start, start + dt.timedelta(days=1)]).to_df()


def published(results: Path, day: dt.date | None = None, table: str = "predictions") -> pd.DataFrame:
    with duckdb.connect(str(results), read_only=True) as con:
        if day is None:
            return con.sql(f"SELECT * FROM {table} ORDER BY day, source_key").to_df()
        return con.sql(f"SELECT * FROM {table} WHERE day = $1 ORDER BY source_key", params=[day]).to_df()


def ledger(results: Path) -> pd.DataFrame:
    with duckdb.connect(str(results), read_only=True) as con:
        return con.sql("SELECT * FROM runs ORDER BY started_at").to_df()


def user_module(name: str, path: Path) -> ModuleType:
    """A user's own module ``name`` from the file ``path`` (outside the installed packages, so registered with
    ``--code``): the one imported now (a run may have imported the version's stored copy), else ``path``."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module
