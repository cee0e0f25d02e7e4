"""Business days under Airflow: ``dag.test()`` and ``scoring run`` give identical partitions for the same New
York business day with ``cron: "0 6 * * *"`` (the 23- and 25-hour DST days), and the real timetable's
scheduled runs score the business day before they are due."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests import business_days as bd
from tests.conftest import write_config
from tests.dags.airflow_env import BIN, DAG_ID, ROOT, airflow_db_template, airflow_env, run_days  # noqa: F401
from tests.helpers import ledger, published

DAYS = [bd.SPRING, bd.FALL]
COMPARED = ["day", "source_key", "score", "label", "model_name", "model_version"]
SCHEDULE = {"cron": "0 6 * * *", "timezone": bd.NY, "start_date": "2026-03-01", "retries": 0,
            "retry_delay_s": 1, "task_timeout_min": 10, "recheck_days": 2}

# Scheduled runs of the real timetable (the DAG parsed by Airflow): when each is due and what it scores.
PROBE = """
import json, types
import pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import TimeRestriction
import scoring_dags
from scoring.config import load_config

dag = DagBag().dags["DAG_ID"]
tt = coerce_to_core_timetable(dag.timetable)
cfg = load_config(scoring_dags.config_paths()[0])
last, out = None, []
restriction = TimeRestriction(earliest=pendulum.datetime(2026, 3, 6, tz="UTC"), latest=None, catchup=True)
for _ in range(4):
    info = tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    run = types.SimpleNamespace(run_type="scheduled", logical_date=info.logical_date, run_after=info.run_after)
    scored = scoring_dags.business_interval(cfg, {}, run, info.data_interval.end)
    out.append({"due": info.run_after.isoformat(), "day": str(scored.day), "hours": scored.hours})
    last = info.data_interval
print(json.dumps({"runs": out, "tasks": sorted(dag.task_ids)}))
""".replace("DAG_ID", DAG_ID)


def cli(*args: str) -> None:
    out = subprocess.run([str(BIN / "scoring"), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sample_db: Path, trained_store: Path,
         airflow_db_template: Path) -> dict:  # noqa: F811
    root = tmp_path_factory.mktemp("bdays")
    source_db = root / "ny.duckdb"
    bd.build(source_db, sample_db)
    paths = {}
    for name in ("dag", "cli"):
        (root / name).mkdir()
        paths[name] = write_config(root / name, source_db, trained_store, schedule=SCHEDULE,
                                   source=bd.source("apps_local", source_db), validation={"data_docs": False})
    home = root / "airflow_home"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    env = airflow_env(home, [paths["dag"]])
    lines = run_days(env, [d.isoformat() for d in DAYS], conf={"rows_per_chunk": 25})
    for day in DAYS:
        cli("run", "--date", day.isoformat(), "-c", str(paths["cli"]), "--show", "0")
    probe = subprocess.run([sys.executable, "-c", PROBE], env={**env, "PYTHONPATH": f"{ROOT}:{ROOT / 'dags'}"},
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    return {"lines": lines, "probe": json.loads(probe.stdout.strip().splitlines()[-1]),
            **{k: p.parent / "results.duckdb" for k, p in paths.items()}}


def test_dag_test_and_scoring_run_give_identical_partitions_on_dst_days(runs: dict) -> None:
    assert [line["state"] for line in runs["lines"]] == ["success", "success"], runs["lines"]
    assert all(line["tasks"]["recheck_late_data"] == "success" for line in runs["lines"])
    dag, cli_out = published(runs["dag"]), published(runs["cli"])
    assert len(dag) == 72 + 79 and dag["source_key"].is_unique
    pd.testing.assert_frame_equal(dag[COMPARED], cli_out[COMPARED])
    counts = ["day", "model_version", "status", "rows_in", "rows_rejected", "rows_scored"]
    dag_runs, cli_runs = ledger(runs["dag"]), ledger(runs["cli"])
    pd.testing.assert_frame_equal(dag_runs[counts], cli_runs[counts])
    assert list(dag_runs["rows_in"]) == [72, 79]
    assert (dag_runs["rows_in"] == dag_runs["rows_scored"] + dag_runs["rows_rejected"]).all()
    intervals = [json.loads(d)["interval"] for d in dag_runs["details"]]
    assert intervals == [json.loads(d)["interval"] for d in cli_runs["details"]]
    assert [(i["start"], i["hours"]) for i in intervals] == [("2026-03-08T05:00:00+00:00", 23.0),
                                                             ("2026-11-01T04:00:00+00:00", 25.0)]
    assert {json.loads(d)["model_rule"] for d in dag_runs["details"]} == {"alias-now"}


def test_scheduled_runs_score_the_business_day_before_they_are_due(runs: dict) -> None:
    assert runs["probe"]["runs"] == [
        {"due": "2026-03-07T11:00:00+00:00", "day": "2026-03-06", "hours": 24.0},  # 06:00 EST
        {"due": "2026-03-08T10:00:00+00:00", "day": "2026-03-07", "hours": 24.0},  # 06:00 EDT, after the change
        {"due": "2026-03-09T10:00:00+00:00", "day": "2026-03-08", "hours": 23.0},
        {"due": "2026-03-10T10:00:00+00:00", "day": "2026-03-09", "hours": 24.0},
    ]
    assert "recheck_late_data" in runs["probe"]["tasks"]
