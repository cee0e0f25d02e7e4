"""Daily scoring DAG: a thin shell over `scoring`. No work at parse time beyond reading the config path."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

CONFIG = os.environ.get("SCORING_CONFIG", os.path.join(os.path.dirname(__file__), "..", "scoring.yaml"))


@dag(
    dag_id="scoring_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 10, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["scoring"],
)
def scoring_daily() -> None:
    @task
    def score(data_interval_start=None, data_interval_end=None) -> dict:  # noqa: ANN001 - Airflow context
        from dataclasses import asdict

        from scoring.config import load_config
        from scoring.dates import DataInterval
        from scoring.pipeline import run_interval

        result = run_interval(load_config(CONFIG), DataInterval.from_bounds(data_interval_start, data_interval_end),
                              trigger="airflow")
        return {k: str(v) for k, v in asdict(result).items()}

    score()


scoring_daily()
