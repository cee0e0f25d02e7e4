"""With a `labels` section, the report DAG recomputes outcomes after each refresh: one task, one call."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_config
from tests.dags.airflow_env import REPORT_DAG_ID
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
