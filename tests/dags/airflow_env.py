"""Airflow for the DAG tests: a private AIRFLOW_HOME (SQLite) per test, used only by subprocesses.

Airflow reads its settings once per process, so every Airflow call of the tests runs in a subprocess whose
environment names the home, the dags folder and the scoring configs; nothing is set in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAG_ID = "scoring_loan_default"
REPORT_DAG_ID = "scoring_reports_loan_default"


def airflow_env(home: Path, configs: list[Path], **extra: str) -> dict[str, str]:
    """Environment for an Airflow subprocess: its own home and SQLite DB, this repo's dags, these configs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # SQLite allows one writer; wait for the lock (default 5 s) when the scheduler and a CLI call overlap.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=60",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "SCORING_CONFIGS": os.pathsep.join(str(c) for c in configs),
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def airflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated Airflow metadata DB, made once; each test copies it."""
    home = tmp_path_factory.mktemp("airflow_template")
    out = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=airflow_env(home, []), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return home / "airflow.db"


@pytest.fixture()
def airflow_home(tmp_path: Path, airflow_db_template: Path) -> Path:
    """A fresh AIRFLOW_HOME with a migrated DB."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    return home


def run_days(env: dict[str, str], days: list[str], conf: dict | None = None, dag_id: str = DAG_ID,
             timeout: float = 600, output: list[str] | None = None) -> list[dict]:
    """``dag.test()`` each day in one subprocess (tests/dags/dag_runner.py); one result dict per day.

    ``output``, when given, receives the subprocess's stdout and stderr (``dag.test()`` logs the tasks there).
    """
    cmd = [sys.executable, "-m", "tests.dags.dag_runner", "--dag-id", dag_id]
    for day in days:
        cmd += ["--day", day]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if output is not None:
        output += [out.stdout, out.stderr]
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(days), (out.stdout + out.stderr)[-5000:]
    return lines
