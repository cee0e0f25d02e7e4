"""Values that cannot be represented are quarantine rows, not failed days (PostgreSQL results), end to end
through ``scoring run``: an unconstrained PostgreSQL ``numeric`` of 1e400 (beyond the double range), a NUL
character in a key and in a passthrough text. The ledger row is finalised (success), rows_in = scored +
quarantined, every other row scores like the model (|diff| <= 1e-9).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from scoring.cli import app
from tests.storage.pg_helpers import pg_execute, pg_frame
from tests.storage.test_key_types import _model

runner = CliRunner()
DAY = dt.date(2026, 3, 7)
N = 20


def _rows() -> pd.DataFrame:
    rng = np.random.default_rng(17)
    return pd.DataFrame({"id": [f"k{i:03d}" for i in range(N)], "x1": rng.normal(size=N),
                         "x2": np.round(rng.normal(scale=50, size=N), 3), "note": [f"n{i}" for i in range(N)],
                         "ts": [dt.datetime(2026, 3, 7, 2) + dt.timedelta(minutes=31 * i) for i in range(N)]})


def _run(tmp_path: Path, source: dict, pg_url: str, pg_schema: str) -> tuple[object, pd.DataFrame, pd.DataFrame]:
    model, artifact, data = _model(tmp_path)
    cfg = tmp_path / "scoring.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {**source, "timestamp_column": "ts", "key_column": "id"},
        "model": {"store": str(tmp_path / "models"), "name": "odd", "alias": "champion"},
        "results": {"kind": "postgres", "url": pg_url, "schema": pg_schema, "staging_dir": str(tmp_path / "st"),
                    "passthrough": ["note"]},
        "validation": {"data_docs": False, "suites_dir": str(tmp_path / "schemas"), "error_threshold": 0.2},
    }, sort_keys=False))
    res = runner.invoke(app, ["models", "register", "--name", "odd", "--artifact", str(artifact), "--training-data",
                              str(data), "--label", "y", "--alias", "champion", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--date", DAY.isoformat(), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    pub = pg_frame(pg_url, f'SELECT * FROM "{pg_schema}".predictions ORDER BY source_key')
    qua = pg_frame(pg_url, f'SELECT source_key, column_name, rule, value FROM "{pg_schema}".quarantine '
                           "ORDER BY source_key")
    runs = pg_frame(pg_url, f'SELECT status, rows_in, rows_scored, rows_rejected FROM "{pg_schema}".runs')
    assert runs.values.tolist() == [["success", N, N - len(qua), len(qua)]]
    return model, pub, qua


def _scores_match(model: object, rows: pd.DataFrame, pub: pd.DataFrame) -> None:
    rows = rows.set_index("id").loc[pub["source_key"]]
    own = model.predict_proba(pd.DataFrame({"x1": rows["x1"], "x2": rows["x2"].astype(float)}))[:, 1]
    assert np.abs(pub["score"].to_numpy(dtype=float) - own).max() <= 1e-9
    assert list(pub["note"]) == list(rows["note"])


@pytest.mark.postgres
def test_numeric_beyond_double_range_is_quarantined(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    rows = _rows()
    table = f'"{pg_schema}".events'
    pg_execute(pg_url, f"CREATE TABLE {table} (id text, ts timestamptz, x1 double precision, x2 numeric, note text)")
    for r in rows.itertuples():
        x2 = "1e400" if r.Index == 4 else ("-1e500" if r.Index == 9 else str(r.x2))
        pg_execute(pg_url, f"INSERT INTO {table} VALUES (%s, %s, %s, CAST(%s AS numeric), %s)",
                   [r.id, r.ts.replace(tzinfo=dt.UTC), r.x1, x2, r.note])
    model, pub, qua = _run(tmp_path, {"kind": "postgres", "url": pg_url, "table": f"{pg_schema}.events"},
                           pg_url, pg_schema)
    assert qua[["source_key", "column_name", "rule"]].values.tolist() == [
        ["k004", "x2", "expect_column_values_to_be_between"], ["k009", "x2", "expect_column_values_to_be_between"]]
    assert list(qua["value"]) == ["inf", "-inf"]
    _scores_match(model, rows, pub)


@pytest.mark.postgres
def test_nul_characters_in_key_and_passthrough_are_quarantined(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    rows = _rows()
    rows.loc[3, "note"] = "bad\x00note"
    rows.loc[7, "id"] = "k\x00007"
    db = tmp_path / "events.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("rows_", rows)
        con.execute("CREATE TABLE events AS SELECT * FROM rows_")
        assert con.sql("SELECT count(*) FROM events WHERE contains(note, chr(0)) OR contains(id, chr(0))"
                       ).fetchall() == [(2,)]
    model, pub, qua = _run(tmp_path, {"kind": "duckdb", "path": str(db), "table": "events"}, pg_url, pg_schema)
    assert qua[["source_key", "column_name", "rule"]].values.tolist() == [
        ["k003", "note", "expect_column_values_to_not_match_regex"],
        ["k\\x00007", "id", "expect_column_values_to_not_match_regex"]]
    assert list(qua["value"]) == ["bad\\x00note", "k\\x00007"]
    _scores_match(model, rows.drop(index=[3, 7]), pub)


@pytest.mark.postgres
def test_numeric_nan_in_a_constrained_column_is_quarantined_not_a_failed_day(tmp_path: Path, pg_url: str,
                                                                              pg_schema: str) -> None:
    """``numeric(12, 3)`` holds NaN, no decimal does: the row is quarantined naming the column, the value and
    the rule (the day used to fail in one line); the other rows score like the model."""
    rows = _rows()
    table = f'"{pg_schema}".events'
    pg_execute(pg_url, f"CREATE TABLE {table} (id text, ts timestamptz, x1 double precision, x2 numeric(12, 3), "
                       "note text)")
    for r in rows.itertuples():
        x2 = "NaN" if r.Index in (2, 11) else str(r.x2)
        pg_execute(pg_url, f"INSERT INTO {table} VALUES (%s, %s, %s, CAST(%s AS numeric(12, 3)), %s)",
                   [r.id, r.ts.replace(tzinfo=dt.UTC), r.x1, x2, r.note])
    model, pub, qua = _run(tmp_path, {"kind": "postgres", "url": pg_url, "table": f"{pg_schema}.events"},
                           pg_url, pg_schema)
    assert qua[["source_key", "column_name", "rule", "value"]].values.tolist() == [
        ["k002", "x2", "expect_column_values_to_not_be_in_set", "NaN"],
        ["k011", "x2", "expect_column_values_to_not_be_in_set", "NaN"]]
    reasons = pg_frame(pg_url, f'SELECT reason, row_json FROM "{pg_schema}".quarantine')
    assert all("cannot be represented" in r for r in reasons["reason"])
    assert all("not representable" not in str(j) for j in reasons["row_json"])
    _scores_match(model, rows.drop(index=[2, 11]), pub)
    assert "x2" not in pub.columns or pub["x2"].notna().all()
