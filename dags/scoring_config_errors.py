"""The scoring configs that cannot be used here, as this file's import error: one line per config (missing,
invalid, or refused under this Airflow's executor), so the Airflow UI lists them under "DAG Import Errors"
while ``scoring_dags.py`` keeps the other configs' DAGs (an import error in that file would hide them all).

Airflow (this DAG file is parsed like any other) bags no DAG from it: when a config is at fault, the one DAG
defined here refuses validation with the errors' text, which Airflow records as the file's import error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import DAG

if str(Path(__file__).resolve().parent) not in sys.path:  # Airflow puts the dags folder there; a bare DagBag not
    sys.path.append(str(Path(__file__).resolve().parent))
from scoring_configs import load_all  # noqa: E402 (this folder)


def config_error_dag(errors: list[str]) -> DAG:
    """A DAG that Airflow's DagBag refuses at validation with ``errors`` (joined by `` | ``)."""
    message = " | ".join(errors)

    class ConfigErrors(DAG):
        def validate(self) -> None:
            raise ValueError(message)

    return ConfigErrors(dag_id="scoring_config_errors", schedule=None,
                        description="not a DAG: the scoring configs that could not be loaded")


_, ERRORS = load_all()
if ERRORS:
    scoring_config_errors = config_error_dag(ERRORS)
