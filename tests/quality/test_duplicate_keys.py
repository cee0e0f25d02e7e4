"""A replayed key under both ``validation.duplicate_keys`` policies, end to end through ``scoring run`` and its
late-data recheck (``schedule.recheck_days``), on DuckDB: ``quarantine`` quarantines every row of the key and the
re-score's ledger row says which published prediction it removed; ``keep_latest`` scores the row with the latest
timestamp (a tie on it quarantines them all). Scores equal the model's own (|diff| <= 1e-9), rows_in = scored +
quarantined, keys as the source holds them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from scoring.cli import app
from tests.storage.test_key_types import _model

runner = CliRunner()
DAY = dt.date(2026, 3, 7)
N = 30


def _setup(tmp_path: Path, policy: str) -> tuple[Path, Path, object]:
    rng = np.random.default_rng(21)
    rows = pd.DataFrame({"id": [f"{i:05d}" for i in range(N)], "x1": rng.normal(size=N),
                         "x2": rng.normal(scale=50, size=N),
                         "ts": [dt.datetime(2026, 3, 7, 0, 5) + dt.timedelta(minutes=20 * i) for i in range(N)]})
    nxt = rows.head(5).assign(id=lambda f: "n" + f["id"], ts=lambda f: f["ts"] + dt.timedelta(days=1))
    db = tmp_path / "events.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("rows_", pd.concat([rows, nxt]))
        con.execute("CREATE TABLE events AS SELECT * FROM rows_")
    model, artifact, data = _model(tmp_path)
    cfg = tmp_path / "scoring.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"kind": "duckdb", "path": str(db), "table": "events", "timestamp_column": "ts", "key_column": "id"},
        "model": {"store": str(tmp_path / "models"), "name": "replay", "alias": "champion"},
        "results": {"kind": "duckdb", "path": str(tmp_path / "r.duckdb"), "staging_dir": str(tmp_path / "st")},
        "validation": {"data_docs": False, "suites_dir": str(tmp_path / "schemas"), "duplicate_keys": policy,
                       "error_threshold": 0.2},
        "schedule": {"recheck_days": 1},
    }, sort_keys=False))
    res = runner.invoke(app, ["models", "register", "--name", "replay", "--artifact", str(artifact),
                              "--training-data", str(data), "--label", "y", "--alias", "champion", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    return cfg, db, model


def _run(cfg: Path, day: dt.date) -> None:
    res = runner.invoke(app, ["run", "--date", day.isoformat(), "--config", str(cfg)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("policy", ["quarantine", "keep_latest"])
def test_a_replayed_key_under_each_duplicate_policy(policy: str, tmp_path: Path) -> None:
    cfg, db, model = _setup(tmp_path, policy)
    _run(cfg, DAY)
    with duckdb.connect(str(db)) as con:  # upstream replays: key 00004 again, later, changed; 00009 twice at once
        con.execute("INSERT INTO events SELECT id, x1 + 3, x2, ts + INTERVAL 2 HOUR FROM events WHERE id = '00004'")
        con.execute("INSERT INTO events SELECT id, x1 - 1, x2, ts FROM events WHERE id = '00009'")
        source = con.sql("SELECT * FROM events WHERE ts < TIMESTAMP '2026-03-08' ORDER BY id, ts").df()
    _run(cfg, DAY + dt.timedelta(days=1))  # its recheck re-scores DAY (32 rows now instead of 30)
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        pub = con.sql("SELECT * FROM predictions WHERE day = $1 ORDER BY source_key", params=[DAY]).df()
        qua = con.sql("SELECT source_key, rule, reason, row_json FROM quarantine WHERE day = $1 ORDER BY source_key",
                      params=[DAY]).df()
        runs = con.sql("SELECT * FROM runs WHERE day = $1 AND status = 'success' ORDER BY finished_at",
                       params=[DAY]).df()
    late = runs.iloc[-1]
    assert late["trigger"] == "late-data" and late["rows_in"] == N + 2 == late["rows_scored"] + late["rows_rejected"]
    details = json.loads(late["details"]) if isinstance(late["details"], str) else late["details"]
    if policy == "quarantine":
        expect = source[~source["id"].isin(["00004", "00009"])]
        assert list(qua["source_key"]) == ["00004", "00004", "00009", "00009"]
        assert details["replaced"]["removed"] == 2 == details["replaced"]["removed_quarantined"]
        assert details["replaced"]["sample"] == ["00004", "00009"]
    else:
        expect = source[source["id"] != "00009"].sort_values("ts").groupby("id").tail(1)
        assert list(qua["source_key"]) == ["00004", "00009", "00009"]
        superseded = qua[qua["source_key"] == "00004"].iloc[0]
        assert "keep_latest" in superseded["reason"] and json.loads(superseded["row_json"])["ts"].startswith(
            "2026-03-07 01:25")
        assert details["replaced"]["removed"] == 1 == details["replaced"]["removed_quarantined"]
    assert late["rows_rejected"] == len(qua)
    expect = expect.sort_values("id")
    assert list(pub["source_key"]) == list(expect["id"])
    own = model.predict_proba(expect[["x1", "x2"]])[:, 1]
    assert np.abs(pub["score"].to_numpy() - own).max() <= 1e-9


@pytest.mark.postgres
def test_keep_latest_on_postgres_numeric_keys(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    """numeric(18,0) keys that no double tells apart, one replayed later in the day: keep_latest publishes the
    later row's score under the key's exact text and quarantines the earlier row; PostgreSQL results."""
    from tests.storage.pg_helpers import pg_execute, pg_frame

    rng = np.random.default_rng(4)
    rows = pd.DataFrame({"id": [str(123456789012345600 + i) for i in range(N)], "x1": rng.normal(size=N),
                         "x2": rng.normal(scale=50, size=N),
                         "ts": [dt.datetime(2026, 3, 7, 0, 5, tzinfo=dt.UTC) + dt.timedelta(minutes=20 * i)
                                for i in range(N)]})
    replay = rows.iloc[[6]].assign(x1=lambda f: f["x1"] + 2, ts=lambda f: f["ts"] + dt.timedelta(hours=3))
    table = f'"{pg_schema}".events'
    pg_execute(pg_url, f"CREATE TABLE {table} (id numeric(18, 0), x1 double precision, x2 double precision, "
                       "ts timestamptz)")
    for r in pd.concat([rows, replay]).itertuples():
        pg_execute(pg_url, f"INSERT INTO {table} VALUES (CAST(%s AS numeric), %s, %s, %s)", [r.id, r.x1, r.x2, r.ts])
    model, artifact, data = _model(tmp_path)
    cfg = tmp_path / "scoring.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"kind": "postgres", "url": pg_url, "table": f"{pg_schema}.events", "timestamp_column": "ts",
                   "key_column": "id"},
        "model": {"store": str(tmp_path / "models"), "name": "replay", "alias": "champion"},
        "results": {"kind": "postgres", "url": pg_url, "schema": pg_schema, "staging_dir": str(tmp_path / "st")},
        "validation": {"data_docs": False, "suites_dir": str(tmp_path / "schemas"), "duplicate_keys": "keep_latest"},
    }, sort_keys=False))
    res = runner.invoke(app, ["models", "register", "--name", "replay", "--artifact", str(artifact),
                              "--training-data", str(data), "--label", "y", "--alias", "champion", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    _run(cfg, DAY)
    pub = pg_frame(pg_url, f'SELECT source_key, score FROM "{pg_schema}".predictions ORDER BY source_key')
    qua = pg_frame(pg_url, f'SELECT source_key, reason FROM "{pg_schema}".quarantine')
    runs = pg_frame(pg_url, f'SELECT rows_in, rows_scored, rows_rejected FROM "{pg_schema}".runs')
    assert runs.values.tolist() == [[N + 1, N, 1]]
    assert qua["source_key"].tolist() == [rows.loc[6, "id"]] and "keep_latest" in qua["reason"][0]
    expect = pd.concat([rows.drop(index=6), replay]).sort_values("id")
    assert pub["source_key"].tolist() == expect["id"].tolist()
    assert np.abs(pub["score"].to_numpy(dtype=float) - model.predict_proba(expect[["x1", "x2"]])[:, 1]).max() <= 1e-9


def test_latest_of_duplicates_of_a_file_input_matches_the_sql_rule(tmp_path: Path) -> None:
    """The Arrow fallback (job files) keeps the same row as the SQL window query: the unique latest row of a
    duplicated key; a tie keeps none; dictionary, decimal and text keys alike."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from scoring.config import SourceConfig
    from scoring.storage.sources.job_input import FileInput

    ts = pa.array([dt.datetime(2026, 1, 1, h) for h in (0, 1, 2, 3, 3, 4)])
    cfg = SourceConfig(kind="duckdb", path=tmp_path / "x.duckdb", table="t", timestamp_column="ts", key_column="id")
    db = tmp_path / "same.duckdb"
    for keys in (pa.array(list("abaccd")).dictionary_encode(), pa.array(list("abaccd")),
                 pa.array([decimal.Decimal(c) for c in "121334"], pa.decimal128(18, 0))):
        pq.write_table(pa.table({"id": keys, "ts": ts}), tmp_path / "dups.parquet")
        got = FileInput(cfg, tmp_path / "dups.parquet").latest_of_duplicates(None, "id", "ts").to_pylist()
        assert [str(r["k"]) for r in got] == [str(keys[0].as_py())] and got[0]["t"] == dt.datetime(2026, 1, 1, 2)
        with duckdb.connect(str(db)) as con:
            con.register("t_", pa.table({"id": keys, "ts": ts}))
            sql = ("SELECT k, t FROM (SELECT id AS k, ts AS t, count(*) OVER (PARTITION BY id) AS n, rank() OVER "
                   "(PARTITION BY id ORDER BY ts DESC) AS r, count(*) OVER (PARTITION BY id, ts) AS tied FROM t_) "
                   "WHERE n > 1 AND r = 1 AND tied = 1")
            assert [(str(k), t) for k, t in con.sql(sql).fetchall()] == [(str(r["k"]), r["t"]) for r in got]
