"""Stores are opened once per process and handed in: every entry point of the engine (``run_interval``, the
plan's publish, a backfill's days) publishes into a results store it is given, a real DuckDB file or a
PostgreSQL schema, without a config round trip; the configured results database is not touched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from scoring.config import ResultsConfig, load_config
from scoring.dates import DataInterval
from scoring.models.store import ModelStore
from scoring.run import plan as steps
from scoring.run.backfill import backfill
from scoring.run.pipeline import run_interval
from scoring.storage.results import ResultsStore, open_results
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import source_day
from tests.quality.helpers import KEY, dirty_source

ENTRY_POINTS = ("run_interval", "publish_plan", "backfill")
DAYS = (SCORE_DAY - dt.timedelta(days=1), SCORE_DAY)


def _handed_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[ResultsStore, object]:
    """A results store built here (not from the run's config) and how to read it back independently."""
    if kind == "duckdb":
        path = tmp_path / "elsewhere" / "handed.duckdb"
        return open_results(ResultsConfig.model_validate({"kind": "duckdb", "path": str(path)})), path
    pg_url, schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
    rc = ResultsConfig.model_validate({"kind": "postgres", "url": pg_url, "schema": schema})
    return open_results(rc), (pg_url, schema)


def _read(where: object, sql: str, params: list) -> pd.DataFrame:
    """A read of the handed-in store with its own driver (DuckDB file or psycopg), not through the store."""
    if isinstance(where, Path):
        with duckdb.connect(str(where), read_only=True) as con:
            return con.execute(sql.replace("%s", "?"), params).df()
    import psycopg

    url, schema = where
    with psycopg.connect(url) as con:
        con.execute(f'SET search_path TO "{schema}"')
        cur = con.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def _publish(entry: str, cfg, store: ResultsStore, days: tuple[dt.date, ...]) -> None:
    if entry == "run_interval":
        for day in days:
            run_interval(cfg, DataInterval.for_day(day, cfg.timezone), rows_per_chunk=150, results=store)
    elif entry == "publish_plan":
        for day in days:
            plan = steps.plan_run(cfg, DataInterval.for_day(day, cfg.timezone), rows_per_chunk=150, key=f"k{day}")
            chunks = steps.stage_plan(cfg, plan)
            counts = steps.publish_plan(cfg, plan, chunks, results=store)
            assert counts["rows_in"] == counts["rows_scored"] + counts["rows_rejected"]
    else:
        outcomes = backfill(cfg, days[0], days[-1], rows_per_chunk=150, results=store)
        assert [o.error for o in outcomes] == [None] * len(days)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("kind", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_entry_point_publishes_into_the_store_it_is_handed(kind: str, entry: str, tmp_path: Path,
                                                               sample_db: Path, store: Path,
                                                               request: pytest.FixtureRequest) -> None:
    # A few rows of the scored days break a row rule, so the quarantine is part of what must add up.
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET age = -3 WHERE {KEY} % 41 = 0")
    cfg = load_config(write_config(tmp_path, db, store))
    handed, where = _handed_store(kind, tmp_path, request)
    _publish(entry, cfg, handed, DAYS)

    assert not cfg.results.path.exists()  # the configured results database was never opened
    model_store = ModelStore(cfg.model.store)
    model = model_store.load(model_store.resolve(cfg.model.name, "champion"))
    runs = _read(where, "SELECT run_id, day, status, rows_in, rows_scored, rows_rejected FROM runs "
                        "WHERE model_name = %s ORDER BY day", [cfg.model.name])
    assert list(runs["status"]) == ["success"] * len(DAYS)
    for day, run in zip(DAYS, runs.itertuples(), strict=True):
        src = source_day(db, day)
        expected = dict(zip(src[KEY].astype(str), model.predict_proba(src)[:, 1], strict=True))
        out = _read(where, "SELECT source_key, score FROM predictions WHERE day = %s AND model_name = %s",
                    [day, cfg.model.name])
        quarantined = _read(where, "SELECT source_key FROM quarantine WHERE run_id = %s", [run.run_id])
        bad = set(src.loc[src["age"] < 0, KEY].astype(str))
        assert bad and set(quarantined["source_key"]) == bad  # the day did quarantine rows
        assert run.rows_in == len(src) == run.rows_scored + run.rows_rejected
        assert (len(out), len(quarantined)) == (run.rows_scored, run.rows_rejected)
        assert set(out["source_key"]) == set(expected) - bad
        worst = max(abs(float(s) - expected[k]) for k, s in zip(out["source_key"], out["score"], strict=True))
        assert worst <= 1e-9, (day, worst)
