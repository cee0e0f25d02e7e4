"""The report DAG builds the Data Docs of the published run (`dag.test()`), which the run itself did not."""

from __future__ import annotations

import json
from pathlib import Path

from scoring.config import load_config
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.dags.airflow_env import REPORT_DAG_ID, airflow_db_template, airflow_env, airflow_home, run_days  # noqa: F401
from tests.quality.helpers import last_run

SCHEDULE = {"start_date": "2026-03-01", "retries": 0, "retry_delay_s": 1, "task_timeout_min": 10}


def test_report_dag_builds_the_runs_data_docs(tmp_path: Path, sample_db: Path, store: Path,
                                              airflow_home: Path) -> None:  # noqa: F811
    cfg = load_config(write_config(tmp_path, sample_db, store, schedule=SCHEDULE))
    result = pipeline.run_day(cfg, SCORE_DAY)
    site = tmp_path / "data_docs" / "loan_default"
    assert not site.exists()  # the run built nothing
    # A manual report run has no triggering Asset event: it builds the model's latest run.
    line, = run_days(airflow_env(airflow_home, [cfg.path]), [SCORE_DAY.isoformat()], dag_id=REPORT_DAG_ID)
    assert line["state"] == "success" and line["tasks"] == {
        "refresh_reports": "success", "data_docs_runs": "success", "build_data_docs": "success"}, line
    pages = [p for p in site.glob("validations/**/*.html")]
    assert len(pages) == 1 and result.run_id in pages[0].read_text()
    assert "https://cdn" not in pages[0].read_text() and (site / "static" / "vendor").is_dir()
    assert json.dumps(last_run(cfg.results.path)["details"]).count("data_docs") == 0
