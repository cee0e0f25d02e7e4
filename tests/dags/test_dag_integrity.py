"""DAG integrity: the dags folder parses without errors, quickly and without top-level work, into the expected
graph, pool, Asset outlet, schedule, retries and params; one DAG pair per config file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.dags.airflow_env import DAG_ID, REPORT_DAG_ID, ROOT, airflow_env

PROBE = r"""
import json, sys, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
import airflow.sdk
imported = time.perf_counter()
bag = DagBag()
parsed = time.perf_counter()
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids),
       "parse_s": parsed - imported, "stats": [[s.file, s.duration.total_seconds()] for s in bag.dagbag_stats],
       "heavy": sorted(m for m in ("duckdb", "sklearn", "joblib", "pyarrow", "pandas", "psycopg", "great_expectations")
                       if m in sys.modules), "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "timetable": type(dag.timetable).__name__, "summary": getattr(dag.timetable, "expression", None),
        "start_date": dag.start_date.isoformat(), "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
        "params": sorted(dag.params.keys()),
        "schedule_assets": [a.uri for a in getattr(getattr(dag.timetable, "asset_condition", None), "objects", [])],
        "tasks": {t.task_id: {"downstream": sorted(t.downstream_task_ids), "pool": t.pool,
                               "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule), "retries": t.retries,
                               "backoff": t.retry_exponential_backoff, "timeout_s": t.execution_timeout.total_seconds(),
                               "outlets": [a.uri for a in t.outlets], "mapped": "Mapped" in type(t).__name__}
                  for t in dag.tasks},
    }
print(json.dumps(out))
"""


def probe(tmp_path: Path, configs: list[Path]) -> dict:
    env = airflow_env(tmp_path / "airflow_home", configs)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture()
def two_configs(tmp_path: Path, sample_db: Path, trained_store: Path) -> list[Path]:
    paths = []
    for name, schedule in (("a", {"cron": "30 2 * * *", "start_date": "2026-02-01", "catchup": True,
                                   "max_active_runs": 2, "retries": 4, "task_timeout_min": 15}),
                           ("b", {})):
        (tmp_path / name).mkdir()
        paths.append(write_config(tmp_path / name, sample_db, trained_store, schedule=schedule,
                                  model={"name": f"model_{name}"}))
    return paths


def test_one_scoring_and_one_report_dag_per_config(tmp_path: Path, two_configs: list[Path]) -> None:
    out = probe(tmp_path, two_configs)
    assert out["import_errors"] == {}
    assert out["dag_ids"] == ["scoring_jobs", "scoring_model_a", "scoring_model_b", "scoring_reports_model_a",
                              "scoring_reports_model_b"]
    a, b = out["dags"]["scoring_model_a"], out["dags"]["scoring_model_b"]
    assert (a["timetable"], a["summary"], a["start_date"], a["catchup"], a["max_active_runs"]) == (
        "CronDataIntervalTimetable", "30 2 * * *", "2026-02-01T00:00:00+00:00", True, 2)
    assert (b["summary"], b["catchup"], b["max_active_runs"]) == ("0 0 * * *", False, 1)
    assert a["tasks"]["score_chunk"]["retries"] == 4 and a["tasks"]["score_chunk"]["timeout_s"] == 900
    assert b["tasks"]["score_chunk"]["retries"] == 3 and b["tasks"]["score_chunk"]["timeout_s"] == 3600
    # Each config's predictions table is its own Asset; each report DAG is scheduled on it.
    for name in ("a", "b"):
        outlets = out["dags"][f"scoring_model_{name}"]["tasks"]["publish"]["outlets"]
        assert outlets == [f"x-scoring://duckdb{tmp_path / name / 'results.duckdb'}/predictions"]
        assert out["dags"][f"scoring_reports_model_{name}"]["schedule_assets"] == outlets


def test_task_graph_pool_retries_and_parse_cost(tmp_path: Path, sample_db: Path, trained_store: Path) -> None:
    cfg = write_config(tmp_path, sample_db, trained_store)
    out = probe(tmp_path, [cfg])
    assert out["import_errors"] == {}
    assert out["dag_ids"] == ["scoring_jobs", DAG_ID, REPORT_DAG_ID]
    jobs = out["dags"]["scoring_jobs"]["tasks"]
    assert {t: v["downstream"] for t, v in jobs.items()} == {
        "score_job": ["publish_job"], "publish_job": ["record_job"], "record_job": []}
    assert jobs["publish_job"]["pool"] == jobs["record_job"]["pool"] == "scoring_publish"
    dag = out["dags"][DAG_ID]
    tasks = dag["tasks"]
    assert {t: v["downstream"] for t, v in tasks.items()} == {
        "plan": ["publish", "score_chunk"], "score_chunk": ["publish"], "publish": ["record_ledger"],
        "record_ledger": []}
    assert tasks["score_chunk"]["mapped"] and not tasks["publish"]["mapped"]
    assert tasks["publish"]["pool"] == tasks["record_ledger"]["pool"] == "scoring_publish"
    assert tasks["score_chunk"]["pool"] == "default_pool"
    report = out["dags"][REPORT_DAG_ID]["tasks"]
    assert {t: v["downstream"] for t, v in report.items()} == {
        "refresh_reports": ["data_docs_runs"], "data_docs_runs": ["build_data_docs"], "build_data_docs": []}
    assert report["refresh_reports"]["pool"] == report["data_docs_runs"]["pool"] == "scoring_publish"
    assert report["build_data_docs"]["pool"] == "default_pool"  # GX's import does not hold the writer slot
    assert tasks["record_ledger"]["trigger_rule"] == "one_failed" and tasks["record_ledger"]["retries"] == 0
    assert all(tasks[t]["backoff"] == 2.0 and tasks[t]["retries"] == 3 for t in ("plan", "score_chunk", "publish"))
    assert tasks["publish"]["outlets"] and not tasks["score_chunk"]["outlets"]
    assert dag["params"] == ["day", "model_as_of", "model_version", "rows_per_chunk"]
    # No top-level work: parsing imports none of the heavy modules and takes well under a second.
    assert out["heavy"] == []
    assert out["parse_s"] < 1.0, out["stats"]
    print(f"DagBag parse of dags/: {out['parse_s'] * 1000:.0f} ms", file=sys.stderr)


def test_a_bad_config_is_an_import_error_naming_the_key(tmp_path: Path, sample_db: Path,
                                                         trained_store: Path) -> None:
    cfg = write_config(tmp_path, sample_db, trained_store, schedule={"max_active_runs": "many"})
    out = probe(tmp_path, [cfg])
    assert out["dag_ids"] == []
    (error,) = out["import_errors"].values()
    assert "schedule.max_active_runs" in error and str(cfg) in error
