"""`scoring airflow init`: what an Airflow deployment needs before the scoring DAGs can run (the publish pool).

Through the REST API when ``SCORING_AIRFLOW_URL`` is set (``scoring.run.airflow_api``: a managed Airflow, a
cluster reached over HTTP), else with the ``airflow`` command of this environment, which reaches the
metadata database its own settings name (``AIRFLOW_HOME``, ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from scoring.cli.app import app, console, handle_errors
from scoring.errors import ScoringError

logger = logging.getLogger(__name__)

POOL = "scoring_publish"  # dags/scoring_dags.py: the single writer of the results database
POOL_DESCRIPTION = "single writer of the results database (scoring DAGs)"

airflow_app = typer.Typer(help="Prepare an Airflow deployment for the scoring DAGs.", no_args_is_help=True)
app.add_typer(airflow_app, name="airflow")


def _airflow_command() -> str:
    """The ``airflow`` executable beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "airflow"
    found = str(beside) if beside.is_file() else shutil.which("airflow")
    if not found:
        raise ScoringError("no 'airflow' command here: set SCORING_AIRFLOW_URL (and a token or user) to "
                           "create the pool through the REST API, or run this where Airflow is installed")
    return found


@airflow_app.command("init")
@handle_errors
def init(slots: Annotated[int, typer.Option(min=1, help="slots of the publish pool (keep 1: one publish at a "
                                             "time is what the DAGs assume)")] = 1) -> None:
    """Create (or resize) the pool `scoring_publish` that the publish tasks wait for."""
    from scoring.run.airflow_api import AirflowApi

    api = AirflowApi.from_env()
    if api is not None:
        done = api.ensure_pool(POOL, slots, POOL_DESCRIPTION)
        console.print(f"pool {POOL} {done} with {slots} slot(s) at {api.url}")
        return
    cmd = [_airflow_command(), "pools", "set", POOL, str(slots), POOL_DESCRIPTION]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    if out.returncode != 0:
        lines = [line for line in (out.stderr or out.stdout).strip().splitlines() if line.strip()]
        raise ScoringError(f"airflow pools set failed: {lines[-1] if lines else 'exit ' + str(out.returncode)} "
                           "(is AIRFLOW_HOME or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN set to your deployment's?)")
    console.print(f"pool {POOL} set to {slots} slot(s) in the metadata database of "
                  f"AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME', '~/airflow')}")
