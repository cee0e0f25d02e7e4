"""Column names of any spelling (spaces, parentheses, quotes, non-ASCII) end to end through ``scoring run``:
through a DuckDB table, a DuckDB query source and a PostgreSQL table with PostgreSQL results. Scores equal
the model's own (|diff| <= 1e-9), keys and passthrough as the source holds them, rows_in = scored + quarantined.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from scoring.cli import app
from tests.storage.pg_helpers import pg_frame

runner = CliRunner()
DAY = dt.date(2026, 3, 7)
FEATURES = ["Annual Income", "age (years)", 'say "hi"', "größe"]
KEY = "order id"


def _data() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    train = pd.DataFrame({f: rng.normal(size=300) for f in FEATURES})
    train["y"] = (train[FEATURES].sum(axis=1) + rng.normal(size=300) > 0).astype(int)
    rows = pd.DataFrame({f: rng.normal(size=25) for f in FEATURES})
    rows.insert(0, KEY, [f"{i:04d}" for i in range(25)])
    rows["ts"] = [dt.datetime(2026, 3, 7, 1) + dt.timedelta(minutes=30 * i) for i in range(25)]
    return train, rows


def _run(tmp_path: Path, source: dict, results: dict) -> tuple[LogisticRegression, pd.DataFrame]:
    train, rows = _data()
    model = LogisticRegression().fit(train[FEATURES], train["y"])
    joblib.dump(model, tmp_path / "m.joblib")
    train.to_parquet(tmp_path / "train.parquet")
    cfg = tmp_path / "scoring.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {**source, "timestamp_column": "ts", "key_column": KEY},
        "model": {"store": str(tmp_path / "models"), "name": "names", "alias": "champion"},
        "results": {**results, "staging_dir": str(tmp_path / "st"), "passthrough": ["age (years)"]},
        "validation": {"data_docs": False, "suites_dir": str(tmp_path / "schemas")},
    }, sort_keys=False))
    res = runner.invoke(app, ["models", "register", "--name", "names", "--artifact", str(tmp_path / "m.joblib"),
                              "--training-data", str(tmp_path / "train.parquet"), "--label", "y",
                              "--alias", "champion", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--date", DAY.isoformat(), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    return model, rows


def _check(model: LogisticRegression, rows: pd.DataFrame, pub: pd.DataFrame, runs: pd.DataFrame) -> None:
    assert list(pub["source_key"]) == list(rows[KEY])
    own = model.predict_proba(rows[FEATURES])[:, 1]
    assert np.abs(pub["score"].to_numpy(dtype=float) - own).max() <= 1e-9
    assert np.array_equal(pub["age (years)"].to_numpy(dtype=float), rows["age (years)"].to_numpy())
    run = runs.iloc[-1]
    assert run["status"] == "success" and run["rows_in"] == len(rows) == run["rows_scored"]


@pytest.mark.parametrize("kind", ["table", "query"])
def test_names_of_any_spelling_through_duckdb(kind: str, tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    _, rows = _data()
    with duckdb.connect(str(db)) as con:
        con.register("rows_", rows)
        con.execute("CREATE TABLE events AS SELECT * FROM rows_")
    columns = ", ".join('"' + c.replace('"', '""') + '"' for c in [KEY, "ts", *FEATURES])
    source = {"kind": "duckdb", "path": str(db), **({"table": "events"} if kind == "table" else
                                                      {"query": f"SELECT {columns} FROM events"})}
    model, rows = _run(tmp_path, source, {"kind": "duckdb", "path": str(tmp_path / "r.duckdb")})
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        pub = con.sql("SELECT * FROM predictions ORDER BY source_key").df()
        runs = con.sql("SELECT * FROM runs ORDER BY started_at").df()
    _check(model, rows, pub, runs)


@pytest.mark.postgres
def test_names_of_any_spelling_through_postgres(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    _, rows = _data()
    with pg.connect(pg_url) as con, con.cursor() as cur:
        cur.adbc_ingest("events", pa.Table.from_pandas(rows.assign(ts=rows["ts"].dt.tz_localize("UTC")),
                                                       preserve_index=False), mode="create", db_schema_name=pg_schema)
        con.commit()
    model, rows = _run(tmp_path, {"kind": "postgres", "url": pg_url, "table": f"{pg_schema}.events"},
                       {"kind": "postgres", "url": pg_url, "schema": pg_schema})
    pub = pg_frame(pg_url, f'SELECT * FROM "{pg_schema}".predictions ORDER BY source_key')
    runs = pg_frame(pg_url, f'SELECT * FROM "{pg_schema}".runs ORDER BY started_at')
    _check(model, rows, pub, runs)
