"""Celery settings of the scoring cluster: Airflow's defaults (``[celery] celery_config_options`` names this
module's ``CELERY_CONFIG``), and, in a worker started with ``SCORING_PRELOAD=1``, the scoring stack imported
once, so the task processes the worker forks for each chunk do not import pandas, pyarrow, DuckDB, the
PostgreSQL driver and scikit-learn again (about 3 s a task on a busy 2-core machine).

Nothing is opened here: imports only (no connection, no thread pool), so forking after them is safe.
"""

from __future__ import annotations

import importlib
import os

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

PRELOAD = ("scoring.run.plan", "scoring.storage.pgconn", "adbc_driver_postgresql.dbapi", "duckdb", "pyarrow.parquet",
           "sklearn.ensemble", "sklearn.pipeline", "sklearn.compose", "sklearn.preprocessing",
           # What each task process needs to parse the DAG file and run its task (about 0.5 s a task under load).
           "airflow.sdk.execution_time.task_runner", "airflow.sdk.definitions.decorators", "airflow.timetables.interval",
           "scoring.run.tasks", "scoring.storage.connections")

CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)

if os.environ.get("SCORING_PRELOAD") == "1":
    for name in PRELOAD:
        importlib.import_module(name)
