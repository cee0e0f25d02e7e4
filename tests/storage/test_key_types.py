"""Row identity and type fidelity, end to end through ``scoring run``: keys of every common type are published as
the canonical text of their own type, passthrough columns keep their type and value, scores equal the model's
own output on the source rows (|diff| <= 1e-9), rows_in = scored + quarantined; on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import decimal
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
from tests.storage.pg_helpers import pg_execute, pg_frame

runner = CliRunner()
DAY = dt.date(2026, 3, 7)
ROWS = 40


def _frame(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=ROWS)
    x2 = np.round(rng.normal(scale=50, size=ROWS), 4)
    ts = [dt.datetime(2026, 3, 7, 0, 10) + dt.timedelta(minutes=17 * i) for i in range(ROWS)]
    bal = [decimal.Decimal("12345678901234567.89") + decimal.Decimal(i) / 100 for i in range(ROWS)]
    return pd.DataFrame({"ts": ts, "x1": x1, "x2": x2, "bal": bal})


def _model(folder: Path) -> tuple[LogisticRegression, Path, Path]:
    """A model trained outside the project on (x1, x2); its artifact and training rows."""
    rng = np.random.default_rng(11)
    train = pd.DataFrame({"x1": rng.normal(size=400), "x2": rng.normal(scale=50, size=400)})
    train["y"] = (train["x1"] + train["x2"] / 40 + rng.normal(scale=0.7, size=400) > 0).astype(int)
    model = LogisticRegression().fit(train[["x1", "x2"]], train["y"])
    artifact, data = folder / "m.joblib", folder / "train.parquet"
    joblib.dump(model, artifact)
    train.to_parquet(data)
    return model, artifact, data


def _run(folder: Path, source: dict, results: dict) -> tuple[LogisticRegression, object]:
    model, artifact, data = _model(folder)
    cfg = folder / "scoring.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": source,
        "model": {"store": str(folder / "models"), "name": "keys", "alias": "champion"},
        "results": {**results, "staging_dir": str(folder / "staging"), "passthrough": ["bal", "ts"]},
        "validation": {"data_docs": False, "suites_dir": str(folder / "schemas")},
    }, sort_keys=False))
    res = runner.invoke(app, ["models", "register", "--name", "keys", "--artifact", str(artifact),
                              "--training-data", str(data), "--label", "y", "--alias", "champion",
                              "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--date", DAY.isoformat(), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    return model


def _check(model: LogisticRegression, source: pd.DataFrame, pub: pd.DataFrame, runs: pd.DataFrame,
           quarantined: int = 0) -> None:
    """Published keys are the source's canonical key texts, passthrough equal, scores equal the model's own."""
    assert sorted(pub["source_key"]) == sorted(source["key_text"])
    joined = source.set_index("key_text").loc[pub["source_key"]]
    own = model.predict_proba(pd.DataFrame({"x1": joined["x1"].astype(float),
                                            "x2": [float(v) for v in joined["x2"]]}))[:, 1]
    assert np.abs(pub["score"].to_numpy(dtype=float) - own).max() <= 1e-9
    assert [decimal.Decimal(str(v)) for v in pub["bal"]] == [decimal.Decimal(str(v)) for v in joined["bal"]]
    run = runs.iloc[-1]
    assert run["status"] == "success"
    assert run["rows_in"] == len(source) == run["rows_scored"] + run["rows_rejected"]
    assert run["rows_rejected"] == quarantined


PG_KEYS = {
    "numeric(12,0)": lambda i: str(100001000000 + i * 1000001),
    "numeric(18,0)": lambda i: str(123456789012345600 + i),
    "numeric(38,0)": lambda i: str(10**37 + i),
    "numeric(20,2)": lambda i: f"{12345678901234567 + i}.{i % 100:02d}",
    "bigint": lambda i: str(9007199254740993 + i * 2),  # odd integers above 2**53: no double holds them
    "text": lambda i: f"{i:06d}",
}


@pytest.mark.postgres
@pytest.mark.parametrize("key_type", list(PG_KEYS))
def test_postgres_keys_and_passthrough_as_the_source_holds_them(key_type: str, tmp_path: Path, pg_url: str,
                                                                pg_schema: str) -> None:
    frame = _frame()
    frame["key_text"] = [PG_KEYS[key_type](i) for i in range(ROWS)]
    table = f'"{pg_schema}".events'
    pg_execute(pg_url, f"CREATE TABLE {table} (id {key_type}, ts timestamptz, x1 double precision, "
                       "x2 numeric(10, 4), bal numeric(20, 2))")
    for row in frame.itertuples():
        pg_execute(pg_url, f"INSERT INTO {table} VALUES (CAST(%s AS {key_type}), %s, %s, %s, %s)",
                   [row.key_text, row.ts.replace(tzinfo=dt.UTC), row.x1, decimal.Decimal(str(row.x2)), row.bal])
    source = {"kind": "postgres", "url": pg_url, "table": f"{pg_schema}.events", "timestamp_column": "ts",
              "key_column": "id"}
    model = _run(tmp_path, source, {"kind": "postgres", "url": pg_url, "schema": pg_schema})
    src = pg_frame(pg_url, f"SELECT CAST(id AS text) AS key_text, x1, x2, bal FROM {table}")
    assert sorted(src["key_text"]) == sorted(frame["key_text"])
    pub = pg_frame(pg_url, f'SELECT * FROM "{pg_schema}".predictions WHERE day = %s ORDER BY source_key', [DAY])
    types = dict(pg_frame(pg_url, "SELECT column_name, data_type || coalesce('(' || numeric_precision || ',' || "
                                  "numeric_scale || ')', '') AS t FROM information_schema.columns "
                                  "WHERE table_schema = %s AND table_name = 'predictions'", [pg_schema]).values)
    assert types["bal"] == "numeric(20,2)" and types["ts"] == "timestamp with time zone"
    ts = pg_frame(pg_url, f"SELECT CAST(id AS text) AS k, ts FROM {table}").set_index("k")["ts"]
    assert (pub.set_index("source_key")["ts"] == ts.loc[pub["source_key"]].to_numpy()).all()
    runs = pg_frame(pg_url, f'SELECT * FROM "{pg_schema}".runs ORDER BY started_at')
    _check(model, src, pub, runs)


DUCKDB_KEYS = {
    "HUGEINT": ("HUGEINT", lambda i: str(170141183460469231731687303715884105000 + i)),
    "DECIMAL(18,0)": ("DECIMAL(18,0)", lambda i: str(123456789012345600 + i)),
    "UBIGINT": ("UBIGINT", lambda i: str(18446744073709551000 + i)),
    "ENUM": ("kind_enum", lambda i: f"k{i:03d}"),
    "VARCHAR": ("VARCHAR", lambda i: f"{i:06d}"),
    "UUID": ("UUID", lambda i: f"00000000-0000-4000-8000-{i:012d}"),
}


@pytest.mark.parametrize("key_type", list(DUCKDB_KEYS))
def test_duckdb_keys_and_passthrough_as_the_source_holds_them(key_type: str, tmp_path: Path) -> None:
    sql_type, text = DUCKDB_KEYS[key_type]
    frame = _frame()
    frame["key_text"] = [text(i) for i in range(ROWS)]
    db = tmp_path / "events.duckdb"
    with duckdb.connect(str(db)) as con:
        levels = ", ".join(f"'{text(i)}'" for i in range(ROWS))
        con.execute(f"CREATE TYPE kind_enum AS ENUM ({levels})")
        con.register("frame", frame)
        con.execute(f"CREATE TABLE events AS SELECT CAST(key_text AS {sql_type}) AS id, ts, x1, "
                    "CAST(x2 AS DECIMAL(10, 4)) AS x2, CAST(bal AS DECIMAL(20, 2)) AS bal FROM frame")
    source = {"kind": "duckdb", "path": str(db), "table": "events", "timestamp_column": "ts", "key_column": "id"}
    results = tmp_path / "results.duckdb"
    model = _run(tmp_path, source, {"kind": "duckdb", "path": str(results)})
    with duckdb.connect(str(db), read_only=True) as con:
        src = con.sql("SELECT CAST(id AS VARCHAR) AS key_text, x1, x2, bal, ts FROM events").df()
    with duckdb.connect(str(results), read_only=True) as con:
        pub = con.sql("SELECT * FROM predictions WHERE day = $1 ORDER BY source_key", params=[DAY]).df()
        runs = con.sql("SELECT * FROM runs ORDER BY started_at").df()
        bal_type = con.sql("SELECT data_type FROM information_schema.columns WHERE table_name = 'predictions' "
                           "AND column_name = 'bal'").fetchall()[0][0]
    assert bal_type == "DECIMAL(20,2)"
    assert (pub.set_index("source_key")["ts"] == src.set_index("key_text").loc[pub["source_key"], "ts"]
            .to_numpy()).all()
    _check(model, src, pub, runs)
