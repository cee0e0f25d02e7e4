"""End to end under a real scheduler: ``airflow standalone`` in a private home, a 3-day ``airflow backfill
create``, then the predictions table equals ``scoring backfill`` and the report DAG ran on the Asset events.
Bounded in time; every process started here is stopped (its process group) in a ``finally``.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import psutil
import pytest

from tests.conftest import SCORE_DAY, write_config
from tests.dags.airflow_env import (  # noqa: F401
    BIN,
    DAG_ID,
    REPORT_DAG_ID,
    AirflowPG,
    airflow_pg,
    airflow_pg_template,
)
from tests.helpers import ledger, published

DAYS = [SCORE_DAY - dt.timedelta(days=2), SCORE_DAY - dt.timedelta(days=1), SCORE_DAY]
COMPARED = ["day", "source_key", "score", "label", "model_name", "model_version"]
WAIT_S = 300  # each wait its own deadline; the test timeout (1800 s, setup included) bounds them together


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _airflow(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    for _attempt in range(4):
        out = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=120)
        # SQLite allows one writer: a CLI call racing the scheduler's write can fail whole (rolled back); ask again.
        if out.returncode == 0 or "database is locked" not in out.stderr:
            break
        time.sleep(3)
    if check:
        assert out.returncode == 0, f"airflow {' '.join(args)}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    return out


def _runs(pg: AirflowPG, dag_id: str) -> list[tuple[str, str, str]]:
    """(run_id, run_type, state) of a DAG's runs, read from the scheduler's metadata database."""
    return pg.query("SELECT run_id, run_type, state FROM dag_run WHERE dag_id = %s ORDER BY logical_date", [dag_id])


def _paused(pg: AirflowPG) -> dict[str, int] | None:
    """is_paused of both DAGs once the dag-processor has serialized them, else None."""
    rows = pg.query("SELECT d.dag_id, d.is_paused::int FROM dag d JOIN serialized_dag s ON s.dag_id = d.dag_id "
                    "WHERE d.dag_id IN (%s, %s)", [DAG_ID, REPORT_DAG_ID])
    return dict(rows) if len(set(rows)) == 2 else None


def _backfill_counts(pg: AirflowPG) -> tuple[int, int]:
    """(backfills with runs that the scheduler has marked complete, backfills still open).

    A ``backfill create`` that fails half-way may leave its backfill row behind without runs (Airflow commits
    the row before creating the runs); such an orphan is not counted as done, and the scheduler closes it.
    """
    return pg.query(
        "SELECT count(*) FILTER (WHERE completed_at IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM backfill_dag_run r WHERE r.backfill_id = b.id)), "
        "count(*) FILTER (WHERE completed_at IS NULL) FROM backfill b")[0]


def _backfills_done(pg: AirflowPG) -> int:
    """Backfills with runs that the scheduler has marked complete (all their runs finished)."""
    return _backfill_counts(pg)[0]


def _create_backfill(env: dict[str, str], pg: AirflowPG, log: Path, *args: str, attempts: int = 4) -> None:
    """``airflow backfill create``, asked again (up to ``attempts`` times) when an attempt fails.

    A failed attempt may leave an orphan backfill open (its row committed, its runs not), and then the next
    attempt is refused with AlreadyRunningBackfill: wait (own deadline) for the scheduler to close it first.
    """
    for _attempt in range(attempts):
        out = subprocess.run([str(BIN / "airflow"), "backfill", "create", *args], env=env, capture_output=True,
                             text=True, timeout=180)
        if out.returncode == 0:
            return
        _wait("the orphan of a failed backfill create to close", lambda: _backfill_counts(pg)[1] == 0, log)
        time.sleep(2)
    pytest.fail(f"airflow backfill create {' '.join(args)}: {out.stdout[-2000:]}{out.stderr[-2000:]}")


def _wait(what: str, predicate, log: Path, timeout: float = WAIT_S) -> None:
    """Poll ``predicate`` every 2 s until it is true; fail after ``timeout`` seconds (each wait its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    pytest.fail(f"timed out waiting for {what}; standalone log tail:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the whole process group (standalone, its components and their task processes)."""
    group = os.getpgid(proc.pid)
    members = [p for p in psutil.process_iter(["pid"]) if _pgid(p) == group]
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        gone, alive = psutil.wait_procs(members, timeout=grace)
        members = alive
        if not members:
            break
    proc.wait(timeout=10)
    assert not [p for p in psutil.process_iter(["pid"]) if _pgid(p) == group]


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, psutil.Error):
        return None


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_airflow_backfill_under_the_scheduler_equals_scoring_backfill(
        tmp_path: Path, sample_db: Path, trained_store: Path, airflow_pg: AirflowPG) -> None:  # noqa: F811
    schedule = {"start_date": "2026-03-01", "retries": 1, "retry_delay_s": 5, "task_timeout_min": 10,
                "max_active_runs": 3}
    (tmp_path / "dag").mkdir()
    (tmp_path / "cli").mkdir()
    cfg = write_config(tmp_path / "dag", sample_db, trained_store, schedule=schedule)
    cli_cfg = write_config(tmp_path / "cli", sample_db, trained_store, schedule=schedule)
    port = _free_port()
    env = airflow_pg.env([cfg], **{
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        # Free ports for the log servers too, so the test never collides with another Airflow on this host.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    })
    _airflow(env, "pools", "set", "scoring_publish", "1", "single writer of the results database")
    log = tmp_path / "standalone.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait("the DAGs to be parsed", lambda: _paused(airflow_pg) is not None, log)
        for dag_id in (DAG_ID, REPORT_DAG_ID):  # new DAGs start paused; backfill runs would stay queued
            _airflow(env, "dags", "unpause", dag_id)
        assert _paused(airflow_pg) == {DAG_ID: 0, REPORT_DAG_ID: 0}
        started = time.monotonic()
        _create_backfill(env, airflow_pg, log, "--dag-id", DAG_ID, "--from-date", DAYS[0].isoformat(),
                         "--to-date", DAYS[-1].isoformat())

        _wait("the 3-day backfill", lambda: _backfills_done(airflow_pg) == 1, log)
        wall = time.monotonic() - started
        print(f"airflow backfill of 3 days under the scheduler: {wall:.1f}s", file=sys.stderr)
        backfill = [r for r in _runs(airflow_pg, DAG_ID) if r[1] == "backfill"]
        assert [r[2] for r in backfill] == ["success"] * 3, backfill
        # Reprocessing a completed day replaces its partition (the same Airflow run, cleared and rerun).
        _create_backfill(env, airflow_pg, log, "--dag-id", DAG_ID, "--from-date", DAYS[-1].isoformat(),
                         "--to-date", DAYS[-1].isoformat(), "--reprocess-behavior", "completed")
        _wait("the reprocessing backfill", lambda: _backfills_done(airflow_pg) == 2, log)
        assert [r[2] for r in _runs(airflow_pg, DAG_ID) if r[1] == "backfill"] == ["success"] * 3
        _wait("a report run after the publishes", lambda: any(
            r[2] == "success" for r in _runs(airflow_pg, REPORT_DAG_ID)), log)
        _wait("every run to finish", lambda: all(
            r[2] in ("success", "failed") for d in (DAG_ID, REPORT_DAG_ID) for r in _runs(airflow_pg, d)), log)
    finally:
        _stop(proc)

    subprocess.run([str(BIN / "scoring"), "backfill", "--start", DAYS[0].isoformat(), "--end",
                    DAYS[-1].isoformat(), "-c", str(cli_cfg)], check=True, capture_output=True, timeout=300)
    results = tmp_path / "dag" / "results.duckdb"
    dag = published(results)
    dag = dag[dag["day"].astype(str).isin([str(d) for d in DAYS])].reset_index(drop=True)
    cli = published(tmp_path / "cli" / "results.duckdb")
    pd.testing.assert_frame_equal(dag[COMPARED], cli[COMPARED])
    runs = ledger(results)
    assert set(runs["trigger"]) == {"airflow"}
    days = runs[runs["day"].astype(str).isin([str(d) for d in DAYS])]
    assert list(days["status"]) == ["success"] * 4  # one ledger row per backfilled day, two for the reprocessed
    assert list(days["day"].astype(str)).count(str(DAYS[-1])) == 2
    last = published(results, DAYS[-1])
    assert len(last) == 600 and last["source_key"].is_unique  # replaced, not duplicated
    assert set(last["run_id"]) == {days[days["day"].astype(str) == str(DAYS[-1])].iloc[-1]["run_id"]}
    with duckdb.connect(str(results), read_only=True) as con:
        summary = con.sql("SELECT day, rows_scored FROM daily_summary ORDER BY day").fetchall()
    assert {(str(d), n) for d, n in summary} >= {(str(d), 600) for d in DAYS}  # the report view
