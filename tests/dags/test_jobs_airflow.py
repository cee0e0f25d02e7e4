"""On-demand jobs with Airflow as the engine: a real ``airflow standalone`` (private home, free loopback ports),
``scoring jobs submit`` through the REST API v2 (token from ``/auth/token``), the ``scoring_jobs`` DAG does the
work; the output equals the embedded run's. A job submitted while the DAG is paused stays queued and is
cancelled. Then a day of the scoring DAG, whose tasks have the same API settings: its run note names the
business day and what was published, as the ledger says; a note a person wrote is kept. Bounded in time; the
standalone's process group is stopped in a ``finally``.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.run import run_notes
from scoring.run.airflow_api import AirflowApi
from scoring.run.jobs import JobSpec, submit
from tests.conftest import SCORE_DAY, write_config
from tests.dags.airflow_env import BIN, AirflowPG, airflow_pg, airflow_pg_template  # noqa: F401
from tests.dags.test_dag_e2e import _airflow, _free_port, _stop, _wait
from tests.helpers import ledger, published, source_day

runner = CliRunner()
WAIT_S = 300


def _parsed(pg: AirflowPG) -> bool:
    return bool(pg.query("SELECT 1 FROM serialized_dag WHERE dag_id = 'scoring_jobs'"))


def _jobs(cfg_path: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["jobs", *args, "--config", str(cfg_path)], env=env)
    return res.exit_code, res.output


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_jobs_through_the_airflow_rest_api(tmp_path: Path, sample_db: Path, trained_store: Path,
                                           airflow_pg: AirflowPG, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    cfg_path = write_config(tmp_path, sample_db, trained_store, schedule={"retries": 0, "task_timeout_min": 5})
    data = tmp_path / "day.parquet"
    source_day(sample_db, SCORE_DAY).to_parquet(data, index=False)
    embedded = submit(load_config(cfg_path), JobSpec("loan_default", str(data), output="emb.parquet"),
                      wait=True, api=None)
    assert embedded["state"] == "succeeded", embedded

    port = _free_port()
    # A known admin password (the simple auth manager keeps a user's password found in its file), so the
    # scheduler's task processes get the API settings the run notes need.
    password = os.urandom(12).hex()
    (airflow_pg.home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": password}))
    client = {"SCORING_AIRFLOW_URL": f"http://127.0.0.1:{port}", "SCORING_AIRFLOW_USERNAME": "admin",
              "SCORING_AIRFLOW_PASSWORD": password}
    env = airflow_pg.env([cfg_path], **client, **{
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}", "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5", "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    })
    _airflow(env, "pools", "set", "scoring_publish", "1", "single writer of the results database")
    log = tmp_path / "standalone.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait("the jobs DAG to be parsed", lambda: _parsed(airflow_pg), log)

        def answers() -> bool:  # the api-server may come up after the dag-processor
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5):
                    return True
            except OSError:
                return False

        _wait("the api-server", answers, log)
        # Paused (new DAGs start paused): the DAG run stays queued, and cancel marks it failed.
        code, out = _jobs(cfg_path, client, "submit", "--input", str(data))
        assert code == 0, out
        queued = out.strip().splitlines()[-1]
        code, out = _jobs(cfg_path, client, "status", queued, "--json")
        assert json.loads(out)["state"] == "queued" and json.loads(out)["airflow_state"] == "queued", out
        code, out = _jobs(cfg_path, client, "cancel", queued, "--json")
        assert (code, json.loads(out)["state"]) == (0, "cancelled"), out
        code, out = _jobs(cfg_path, client, "status", queued, "--json")
        assert (code, json.loads(out)["state"]) == (2, "cancelled"), out

        _airflow(env, "dags", "unpause", "scoring_jobs")
        code, out = _jobs(cfg_path, client, "submit", "--input", str(data), "--output", "af.parquet")
        assert code == 0, out
        job_id = out.strip().splitlines()[-1]
        code, out = _jobs(cfg_path, client, "status", job_id, "--wait", "--timeout", str(WAIT_S), "--json")
        row = json.loads(out)
        assert (code, row["state"]) == (0, "succeeded"), f"{out}\n{log.read_text()[-4000:]}"
        assert row["rows_in"] == row["rows_scored"] + row["rows_quarantined"] == embedded["rows_in"]
        def runs() -> list[tuple[str, str]]:
            return sorted(airflow_pg.query("SELECT run_id, state FROM dag_run WHERE dag_id = 'scoring_jobs'"))

        expected = sorted([(f"job__{queued}", "failed"), (f"job__{job_id}", "success")])
        _wait("the job's DAG run to end (record_job)", lambda: runs() == expected, log)

        # A day of the scoring DAG: its note names the business day, then what was published.
        api = AirflowApi(client["SCORING_AIRFLOW_URL"], "admin", password, dag_id="scoring_loan_default")
        _airflow(env, "dags", "unpause", "scoring_loan_default")
        api.trigger("day_run", {"day": SCORE_DAY.isoformat()})
        _wait("the scoring DAG run to end", lambda: api.run_state("day_run") in ("success", "failed"), log)
        assert api.run_state("day_run") == "success", log.read_text()[-4000:]
        row = ledger(tmp_path / "results.duckdb").iloc[-1]
        assert row["status"] == "success" and row["rows_in"] == row["rows_scored"] + row["rows_rejected"]
        assert len(published(tmp_path / "results.duckdb", SCORE_DAY)) == row["rows_scored"] > 0
        assert api.run_note("day_run") == (
            f"Business day {SCORE_DAY} (UTC): loan_default v{row['model_version']} published "
            f"{row['rows_scored']:,} scored, {row['rows_rejected']:,} quarantined (run {row['run_id']})")
        # A note a person wrote stays.
        api.set_run_note("day_run", "checked by the on-call analyst")
        for name, value in client.items():
            monkeypatch.setenv(name, value)
        assert not run_notes.note_run("scoring_loan_default", "day_run", "Business day overwritten")
        assert api.run_note("day_run") == "checked by the on-call analyst"
    finally:
        _stop(proc)

    cols = ["source_key", "score", "label", "predicted_class", "model_name", "model_version"]
    ours = pq.read_table(tmp_path / "job_outputs" / "af.parquet").to_pandas()[cols].sort_values("source_key").reset_index(drop=True)
    theirs = pq.read_table(tmp_path / "job_outputs" / "emb.parquet").to_pandas()[cols].sort_values("source_key").reset_index(drop=True)
    assert ours.equals(theirs)
