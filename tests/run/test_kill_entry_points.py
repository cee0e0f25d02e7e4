"""The kill matrix beyond ``scoring run`` (issue 23): the same fault points SIGKILL a process running the DAG's
chunk tasks and a ``scoring jobs work`` process about to publish. After each kill nothing was published; the
retry (the DAG's task retry, a resubmitted job) converges on the model's own scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.run import tasks
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import published, source_day
from tests.run.fault_helpers import assert_exact, expected_scores, staged_files

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

# The DAG's mapped score_chunk tasks of a plan, one after the other in one process (argv: config, plan file).
CHUNK_TASKS = """
import json, sys
from scoring.config import load_config
from scoring.run import tasks
cfg = load_config(sys.argv[1]); plan = json.load(open(sys.argv[2]))
for index in tasks.validate_plan(cfg, plan):
    tasks.score_chunk(cfg, plan, index)
"""


def _env(fault: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SCORING_FAULT": fault}


def _runs(results: Path) -> list[tuple]:
    if not results.exists():
        return []
    with duckdb.connect(str(results), read_only=True) as con:
        return con.execute("SELECT status, trigger FROM runs").fetchall()


def test_a_killed_chunk_task_publishes_nothing_and_its_retry_reuses_the_staged_chunks(
        tmp_path: Path, sample_db: Path, store: Path) -> None:
    cfg_path = write_config(tmp_path, sample_db, store, chunking={"rows_per_chunk": 150})
    cfg = load_config(cfg_path)
    planned = tasks.plan_run(cfg, DataInterval.for_day(SCORE_DAY), key="scheduled__kill")
    assert len(planned["chunks"]) == 4
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(planned))  # the XCom the chunk tasks read
    killed = subprocess.run([sys.executable, "-c", CHUNK_TASKS, str(cfg_path), str(plan_file)],
                            env=_env("after_chunk_1"), cwd=ROOT, capture_output=True, text=True, timeout=300,
                            check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _runs(cfg.results.path) == []  # chunk tasks never write the results database
    assert len([p for p in staged_files(cfg.results.staging_dir) if p.name.endswith(".parquet")]) >= 2

    retried = [tasks.score_chunk(cfg, planned, i) for i in tasks.validate_plan(cfg, planned)]
    assert [r["reused"] for r in retried] == [True, True, False, False]  # chunks 0 and 1 survived the kill
    counts = tasks.publish(cfg, planned, retried)
    assert _runs(cfg.results.path) == [("success", "airflow")]
    assert json.loads(duckdb.connect(str(cfg.results.path), read_only=True).execute(
        "SELECT details FROM runs").fetchone()[0])["chunks_reused"] == 2
    assert_exact(published(cfg.results.path, SCORE_DAY), expected_scores(sample_db, store, SCORE_DAY),
                 counts["rows_in"], counts["rows_rejected"])


def test_a_job_worker_killed_before_publish_leaves_nothing_published_and_a_resubmit_succeeds(
        tmp_path: Path, sample_db: Path, store: Path) -> None:
    cfg_path = write_config(tmp_path, sample_db, store, chunking={"rows_per_chunk": 150})
    cfg = load_config(cfg_path)
    data = tmp_path / "day.parquet"
    source_day(sample_db, SCORE_DAY).to_parquet(data, index=False)

    def submit() -> str:
        res = runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), "--input", str(data), "--json"])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["job_id"]

    def status(job_id: str) -> tuple[int, dict]:
        res = runner.invoke(app, ["jobs", "status", job_id, "--config", str(cfg_path), "--json"])
        return res.exit_code, json.loads(res.stdout)

    first = submit()
    killed = subprocess.run([sys.executable, "-m", "scoring.cli", "jobs", "work", "--config", str(cfg_path)],
                            env=_env("before_publish"), cwd=ROOT, capture_output=True, text=True, timeout=300,
                            check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    code, row = status(first)  # the dead worker's job ends interrupted when looked at, without another worker
    assert code == 1 and row["state"] == "interrupted" and row["rows_scored"] == 0, row
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM job_predictions").fetchone()[0] == 0
    again = submit()
    assert runner.invoke(app, ["jobs", "work", "--config", str(cfg_path)]).exit_code == 0
    code, row = status(again)
    assert code == 0 and row["state"] == "succeeded" and row["rows_in"] == 600, row
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        got = con.execute("SELECT source_key, score FROM job_predictions WHERE job_id = ?", [again]).df()
    assert_exact(got, expected_scores(sample_db, store, SCORE_DAY), row["rows_in"], row["rows_quarantined"])
