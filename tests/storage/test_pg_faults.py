"""Fault injection on PostgreSQL results: real `scoring run` processes killed at the commit boundary, an
older run superseded under the advisory lock, and a publish blocked by a session holding a table lock."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import psycopg
import pytest

from scoring.config import load_config
from scoring.errors import ResultsLocked
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.run.fault_helpers import assert_exact, cli, expected_scores, staged_files, wait_for
from tests.storage.pg_helpers import pg_ledger, pg_published

pytestmark = pytest.mark.postgres


def _cfg_path(tmp_path: Path, sample_db: Path, store: Path, pg_url: str, schema: str, **more: object) -> Path:
    return write_config(tmp_path, sample_db, store, results={
        "kind": "postgres", "url": pg_url, "path": None, "schema": schema,
        "staging_dir": str(tmp_path / "staging"), "connect_timeout_s": 2, **more})


@pytest.mark.parametrize(("stage", "published_new"), [("before_commit", False), ("after_commit", True)])
def test_kill_at_the_commit_boundary_then_converge(tmp_path: Path, sample_db: Path, store: Path, pg_url: str,
                                                   pg_schema: str, stage: str, published_new: bool) -> None:
    cfg_path = _cfg_path(tmp_path, sample_db, store, pg_url, pg_schema)
    cfg = load_config(cfg_path)
    old = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=200)
    killed = cli(cfg_path, SCORE_DAY, stage)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    dead = pg_ledger(pg_url, pg_schema).iloc[-1]
    pred = pg_published(pg_url, pg_schema, SCORE_DAY)
    assert set(pred["run_id"]) == {dead["run_id"] if published_new else old.run_id}
    again = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=200)
    runs = pg_ledger(pg_url, pg_schema).set_index("run_id")
    assert runs.loc[dead["run_id"], "status"] == ("success" if published_new else "interrupted")
    assert (runs["status"] != "running").all()
    pred = pg_published(pg_url, pg_schema, SCORE_DAY)
    assert set(pred["run_id"]) == {again.run_id}
    assert_exact(pred, expected_scores(sample_db, store, SCORE_DAY), again.rows_in, again.rows_rejected)
    assert staged_files(cfg.results.staging_dir) == []


def test_older_run_is_superseded_on_postgres(tmp_path: Path, sample_db: Path, store: Path, pg_url: str,
                                             pg_schema: str) -> None:
    cfg_path = _cfg_path(tmp_path, sample_db, store, pg_url, pg_schema)
    cfg = load_config(cfg_path)
    gate = tmp_path / "go"
    older = cli(cfg_path, SCORE_DAY, f"before_publish=wait:{gate}", wait=False)
    try:
        wait_for(Path(f"{gate}.reached"))
        newer = pipeline.run_day(cfg, SCORE_DAY)
        gate.touch()
        _, err = older.communicate(timeout=120)
    finally:
        if older.poll() is None:
            older.kill()
    assert older.returncode == 0 and f"superseded by run {newer.run_id}" in " ".join(err.split())
    runs = pg_ledger(pg_url, pg_schema).set_index("run_id")
    assert sorted(runs["status"]) == ["success", "superseded"]
    pred = pg_published(pg_url, pg_schema, SCORE_DAY)
    assert set(pred["run_id"]) == {newer.run_id}
    assert_exact(pred, expected_scores(sample_db, store, SCORE_DAY), newer.rows_in, newer.rows_rejected)


def test_publish_blocked_by_a_session_names_it_within_lock_timeout(tmp_path: Path, sample_db: Path, store: Path,
                                                                   pg_url: str, pg_schema: str) -> None:
    cfg = load_config(_cfg_path(tmp_path, sample_db, store, pg_url, pg_schema, lock_timeout_s=1))
    pipeline.run_day(cfg, SCORE_DAY - dt.timedelta(days=1))
    with psycopg.connect(pg_url, application_name="bi_dashboard") as bi:
        bi.execute(f'LOCK TABLE "{pg_schema}".predictions IN ACCESS EXCLUSIVE MODE')  # a stuck migration/BI tx
        with pytest.raises(ResultsLocked, match="bi_dashboard") as info:
            pipeline.run_day(cfg, SCORE_DAY)
        bi.rollback()
    assert "results.lock_timeout_s" in str(info.value) and "\n" not in str(info.value)
    runs = pg_ledger(pg_url, pg_schema)
    assert runs.iloc[-1]["status"] == "failed"
    assert staged_files(cfg.results.staging_dir)  # kept: the rerun only publishes
    pipeline.run_day(cfg, SCORE_DAY)
    assert staged_files(cfg.results.staging_dir) == []


def test_a_schema_change_behind_an_idle_reader_never_queues_readers_for_long(
        tmp_path: Path, sample_db: Path, store: Path, pg_url: str, pg_schema: str) -> None:
    """An analyst's idle transaction holds a lock the passthrough ALTER TABLE needs: the run retries short
    attempts (DDL_LOCK_S) with backoff, so a dashboard query issued meanwhile gets through under a statement
    timeout far below results.lock_timeout_s; the run then fails naming the analyst, and succeeds later."""
    import threading

    cfg = load_config(_cfg_path(tmp_path, sample_db, store, pg_url, pg_schema, lock_timeout_s=20))
    pipeline.run_day(cfg, SCORE_DAY - dt.timedelta(days=1))
    wider = load_config(_cfg_path(tmp_path, sample_db, store, pg_url, pg_schema, lock_timeout_s=20,
                                  passthrough=["state"]))
    dashboard: dict[str, object] = {}

    def read_while_blocked() -> None:
        import time

        time.sleep(4)  # the run is retrying its ALTER by now
        with psycopg.connect(pg_url, application_name="dashboard") as con:
            con.execute("SET statement_timeout = '10s'")  # half of lock_timeout_s
            try:
                dashboard["rows"] = con.execute(f'SELECT count(*) FROM "{pg_schema}".predictions').fetchone()[0]
            except psycopg.Error as exc:
                dashboard["error"] = str(exc)

    with psycopg.connect(pg_url, application_name="analyst_notebook") as analyst:
        analyst.execute(f'SELECT * FROM "{pg_schema}".predictions LIMIT 1').fetchall()  # idle in transaction
        reader = threading.Thread(target=read_while_blocked)
        reader.start()
        with pytest.raises(ResultsLocked, match="analyst_notebook"):
            pipeline.run_day(wider, SCORE_DAY)
        reader.join(timeout=60)
        analyst.rollback()
    assert dashboard.get("rows", 0) > 0, dashboard  # not queued behind the ALTER for the whole budget
    result = pipeline.run_day(wider, SCORE_DAY)
    assert result.status == "success"
    assert "state" in pg_published(pg_url, pg_schema, SCORE_DAY).columns
