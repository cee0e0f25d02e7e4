"""With a `labels` section, the report DAG recomputes outcomes after each refresh: one task, one call."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
from sklearn.metrics import roc_auc_score

from sample_data.generate import generate
from scoring.config import load_config
from scoring.run import pipeline
from tests.conftest import write_config
from tests.dags.airflow_env import (  # noqa: F401 - fixtures
    REPORT_DAG_ID,
    airflow_db_template,
    airflow_env,
    airflow_home,
    run_days,
)
from tests.dags.test_dag_integrity import probe


def test_report_dag_has_an_outcomes_task_with_labels(tmp_path: Path, sample_db: Path, trained_store: Path) -> None:
    cfg = write_config(tmp_path, sample_db, trained_store,
                       labels={"kind": "duckdb", "path": str(tmp_path / "labels.duckdb"), "table": "labels",
                               "key_column": "application_id", "label_column": "defaulted",
                               "observed_at_column": "observed_at"})
    out = probe(tmp_path, [cfg])
    assert out["import_errors"] == {}
    report = out["dags"][REPORT_DAG_ID]["tasks"]
    assert report["refresh_reports"]["downstream"] == ["data_docs_runs", "outcomes"]
    assert report["outcomes"]["downstream"] == [] and report["outcomes"]["pool"] == "scoring_publish"
    assert out["heavy"] == []


def test_report_dag_outcomes_task_under_dag_test_joins_the_labels(tmp_path: Path, store: Path,
                                                                  airflow_home: Path) -> None:  # noqa: F811
    """The report DAG's `outcomes` task under a real `dag.test()`: it writes the day's `outcomes` row, whose
    labelled count and ROC AUC equal scikit-learn's on the published scores joined to the labels by key."""
    # The task recomputes the labels.max_delay_days days up to yesterday (the clock's): the scored day is a
    # recent one of a source generated like the sample, so that window is a few days (reaching back to the
    # sample's March days instead meant ~280 days, one more every day, most of the task's 19 s). Scored day:
    # 4 days ago, labels observed a day later, window 6 days: the day stays inside it even if UTC midnight
    # passes during the test.
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=4)
    source = tmp_path / "recent.duckdb"
    generate(source, day, 3, 600, seed=7)  # the generator's last third (here the third day) has new levels
    labels = {"kind": "duckdb", "path": str(source), "key_column": "application_id",
              "label_column": "defaulted", "observed_at_column": "observed_at", "max_delay_days": 6,
              "query": "SELECT application_id, defaulted, applied_at + INTERVAL 1 DAY AS observed_at "
                       "FROM loan_applications WHERE defaulted IS NOT NULL"}
    schedule = {"start_date": "2026-03-01", "retries": 0, "retry_delay_s": 1, "task_timeout_min": 10}
    cfg = load_config(write_config(tmp_path, source, store, labels=labels, schedule=schedule))
    result = pipeline.run_day(cfg, day)
    assert result.rows_scored > 0
    line, = run_days(airflow_env(airflow_home, [cfg.path]), [day.isoformat()], dag_id=REPORT_DAG_ID)
    assert line["state"] == "success" and line["tasks"]["outcomes"] == "success", line
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        rows = con.execute("SELECT model_version, role, rows_scored, labelled, metrics FROM outcomes "
                           "WHERE day = $1", [day]).fetchall()
        con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        joined = con.execute("SELECT p.score, s.defaulted FROM predictions p JOIN src.loan_applications s "
                             "ON p.source_key = CAST(s.application_id AS VARCHAR) WHERE p.day = $1 "
                             "AND s.defaulted IS NOT NULL", [day]).fetchall()
    assert len(rows) == 1, rows
    version, role, scored, labelled, metrics = rows[0]
    assert (version, role, scored) == (result.model_version, "champion", result.rows_scored)
    assert labelled == len(joined) > 0
    realized = json.loads(metrics)
    expected = roc_auc_score([int(y) for _, y in joined], [s for s, _ in joined])
    assert abs(realized["roc_auc"] - expected) <= 1e-9
