"""Deploying the DAGs anywhere (issue 30) and the Airflow items of issue 24, with a real Airflow.

- Under a multi-host executor a config that keeps state on one host's disk is refused at parse, in one line;
  ``deployment.single_host`` accepts it.
- One bad config is an import error in one line; the other configs' DAGs still load.
- A copy of ``dags/`` alone, with the config in an Airflow Variable (given as ``AIRFLOW_VAR_*``), parses and
  runs a day under ``dag.test()``.
- A publish that fails before it writes anything still leaves a ``failed`` ledger row that ``scoring runs``
  shows; one that fails after entering its row leaves exactly that row.
- A manual run of a day that has not ended is refused in one line (and recorded as failed); so is a derived day
  before ``schedule.start_date``.
- ``scoring airflow init`` creates the publish pool in the metadata database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scoring.config import load_config
from scoring.deployment import check_deployment, executor_names, host_bound_state, is_multi_host
from scoring.errors import ConfigError
from tests.conftest import SCORE_DAY, write_config
from tests.dags.airflow_env import (  # noqa: F401
    BIN,
    DAG_ID,
    REPORT_DAG_ID,
    ROOT,
    AirflowPG,
    DagRunner,
    airflow_env,
    airflow_pg,
    airflow_pg_template,
    run_days,
)
from tests.helpers import ledger, published

SCHEDULE = {"start_date": "2026-03-01", "retries": 0, "retry_delay_s": 1, "task_timeout_min": 10}

PROBE = r"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag()
print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids),
                  "docs": {d: (bag.dags[d].doc_md or "") for d in bag.dag_ids}}))
"""


def parse(env: dict[str, str], cwd: Path = ROOT) -> dict:
    """DagBag of the dags folder ``env`` names, in a subprocess with that environment."""
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- refusals under a multi-host executor ----------------------------------------------------------------------


def test_executor_names_and_which_are_multi_host() -> None:
    assert executor_names(None) == ["LocalExecutor"] and not is_multi_host(None)
    assert not is_multi_host("LocalExecutor") and not is_multi_host(" SequentialExecutor ")
    assert is_multi_host("CeleryExecutor") and is_multi_host("KubernetesExecutor")
    assert executor_names("LocalExecutor,my_k8s:airflow.providers.cncf.kubernetes.KubernetesExecutor") == [
        "LocalExecutor", "KubernetesExecutor"]
    assert is_multi_host("LocalExecutor,CeleryExecutor")  # any executor of the list may get a task
    assert is_multi_host("my_company.executors.GridExecutor")  # unknown: its workers may be anywhere


def test_duckdb_results_or_local_staging_are_refused_under_celery(tmp_path: Path, sample_db: Path,
                                                                  trained_store: Path) -> None:
    cfg = load_config(write_config(tmp_path, sample_db, trained_store))
    with pytest.raises(ConfigError) as refused:
        check_deployment(cfg, "CeleryExecutor", origin="config x.yaml")
    line = str(refused.value)
    assert "\n" not in line and line.startswith("config x.yaml: CeleryExecutor runs tasks on other hosts")
    for key in ("results.path", "results.staging_dir", "model.store", "validation.suites_dir", "source.path"):
        assert key in line
    assert "deployment.single_host: true" in line and "PostgreSQL" in line
    check_deployment(cfg, "LocalExecutor")  # the laptop and one-server setups are untouched
    check_deployment(cfg, None)

    # PostgreSQL results with S3 staging: no longer named, the local model store and suites still are.
    remote = load_config(write_config(tmp_path, sample_db, trained_store, results={
        "kind": "postgres", "url": "postgresql://scoring@db/prod", "path": None,
        "staging_dir": "s3://bucket/staging"}))
    bound = " ".join(host_bound_state(remote))
    assert "results." not in bound and "model.store" in bound and "validation.suites_dir" in bound

    single = load_config(write_config(tmp_path, sample_db, trained_store, deployment={"single_host": True}))
    check_deployment(single, "CeleryExecutor")  # the escape hatch of a shared disk


def test_multi_host_refusal_is_an_import_error_in_one_line(tmp_path: Path, sample_db: Path,
                                                           trained_store: Path) -> None:
    (tmp_path / "shared").mkdir()
    cfg = write_config(tmp_path, sample_db, trained_store)
    shared = write_config(tmp_path / "shared", sample_db, trained_store, model={"name": "shared_disk"},
                          deployment={"single_host": True})
    home = tmp_path / "home"
    out = parse(airflow_env(home, [cfg, shared], AIRFLOW__CORE__EXECUTOR="CeleryExecutor"))
    (error,) = out["import_errors"].values()
    assert error.count("\n") == 0 and str(cfg) in error and "CeleryExecutor runs tasks on other hosts" in error
    assert "results.path" in error and "results.staging_dir" in error
    # The config that says its workers share a disk still gets its DAGs.
    assert out["dag_ids"] == ["scoring_jobs", "scoring_reports_shared_disk", "scoring_shared_disk"]

    local = parse(airflow_env(home, [cfg], AIRFLOW__CORE__EXECUTOR="LocalExecutor"))
    assert local["import_errors"] == {} and DAG_ID in local["dag_ids"]


# --- issue 24: one bad config -----------------------------------------------------------------------------------


def test_one_bad_config_does_not_hide_the_other_dags(tmp_path: Path, sample_db: Path, trained_store: Path,
                                                     airflow_pg: AirflowPG) -> None:  # noqa: F811
    for name in ("good", "bad"):
        (tmp_path / name).mkdir()
    good = write_config(tmp_path / "good", sample_db, trained_store)
    bad = write_config(tmp_path / "bad", sample_db, trained_store, model={"name": "other"},
                       schedule={"max_active_runs": "many"})
    missing = tmp_path / "nowhere" / "scoring.yaml"
    env = airflow_pg.env([bad, good, missing])
    out = parse(env)
    assert out["dag_ids"] == ["scoring_jobs", DAG_ID, REPORT_DAG_ID]
    ((where, error),) = out["import_errors"].items()
    assert where.endswith("scoring_config_errors.py") and "\n" not in error
    assert str(bad) in error and "schedule.max_active_runs" in error
    assert str(missing) in error and "not found" in error

    # The real dag-processor: the good config's DAGs are live (not stale, no import error: schedulable and
    # triggerable), the errors are listed against the errors file only. Two parsing rounds of every file;
    # a file is parsed again only after min_file_process_interval (30 s by default): 1 s here.
    proc = subprocess.run([str(BIN / "airflow"), "dag-processor", "--num-runs", "2"], cwd=tmp_path,
                          env={**env, "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dags = airflow_pg.query("SELECT dag_id, is_stale, has_import_errors FROM dag ORDER BY dag_id")
    assert dags == [("scoring_jobs", False, False), (DAG_ID, False, False), (REPORT_DAG_ID, False, False)]
    ((filename, stacktrace),) = airflow_pg.query("SELECT filename, stacktrace FROM import_error")
    assert filename == "scoring_config_errors.py" and str(bad) in stacktrace and "\n" not in stacktrace.strip()


# --- a dags folder deployed alone ------------------------------------------------------------------------------


def _deployed_dags(tmp_path: Path) -> Path:
    """A copy of dags/ alone (its listing still names ../scoring.yaml, which is not there)."""
    folder = tmp_path / "deployed" / "dags"
    shutil.copytree(ROOT / "dags", folder, ignore=shutil.ignore_patterns("__pycache__"))
    assert not (folder.parent / "scoring.yaml").exists()
    return folder


def test_dags_folder_alone_needs_a_config_and_says_so(tmp_path: Path) -> None:
    folder = _deployed_dags(tmp_path)
    env = airflow_env(tmp_path / "home", [], AIRFLOW__CORE__DAGS_FOLDER=str(folder))
    out = parse(env, cwd=tmp_path)
    (error,) = out["import_errors"].values()
    assert out["dag_ids"] == [] and "\n" not in error
    assert "not found" in error and "scoring_config" in error and "SCORING_CONFIG" in error


def test_dags_folder_alone_loads_and_runs_with_the_config_in_a_variable(
        tmp_path: Path, sample_db: Path, trained_store: Path, airflow_pg: AirflowPG) -> None:  # noqa: F811
    folder = _deployed_dags(tmp_path)
    raw = yaml.safe_load(write_config(tmp_path, sample_db, trained_store, schedule=SCHEDULE).read_text())
    text = yaml.safe_dump(raw, sort_keys=False)
    env = airflow_pg.env([], AIRFLOW__CORE__DAGS_FOLDER=str(folder), AIRFLOW_VAR_SCORING_CONFIG=text)
    out = parse(env, cwd=tmp_path)
    assert out["import_errors"] == {}
    assert out["dag_ids"] == ["scoring_jobs", DAG_ID, REPORT_DAG_ID]
    doc = out["docs"][DAG_ID]  # written for operators: what it does, its params, what to do when it fails
    assert "Airflow Variable `scoring_config`" in doc and "When a run fails" in doc
    assert all(f"`{param}`" in doc for param in ("day", "model_version", "rows_per_chunk", "model_as_of"))
    assert "scoring_loan_default" in out["docs"][REPORT_DAG_ID] and "refresh_reports" in out["docs"][REPORT_DAG_ID]

    # A config file inside the deployed folder, named by $SCORING_CONFIG relative to it, works too.
    shutil.copy(tmp_path / "scoring.yaml", folder / "model.yaml")
    by_path = parse(airflow_pg.env([], AIRFLOW__CORE__DAGS_FOLDER=str(folder), SCORING_CONFIG="model.yaml"),
                    cwd=tmp_path)
    assert by_path["import_errors"] == {} and DAG_ID in by_path["dag_ids"]

    # The tasks read the config from the Variable again (wherever they run): a real run of one day.
    line = run_days(env, [SCORE_DAY.isoformat()], conf={"rows_per_chunk": 250})[0]
    assert line["state"] == "success", line
    results = Path(raw["results"]["path"])
    assert len(published(results, SCORE_DAY)) == 600
    assert ledger(results).iloc[-1]["status"] == "success"
    labels = airflow_pg.query("SELECT map_index, rendered_map_index FROM task_instance WHERE task_id = "
                              "'score_chunk' ORDER BY map_index")
    assert [m for m, _ in labels] == [0, 1, 2]
    assert labels[0][1].startswith(f"{SCORE_DAY} chunk 1/3 keys (-inf, ")
    assert labels[2][1].startswith(f"{SCORE_DAY} chunk 3/3 keys (") and labels[2][1].endswith(", +inf]")


# --- every failed run has a ledger row --------------------------------------------------------------------------


def _runs_cli(cfg: Path) -> list[dict]:
    out = subprocess.run([str(BIN / "scoring"), "runs", "-c", str(cfg), "--json"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_a_failing_publish_leaves_a_failed_ledger_row(tmp_path: Path, sample_db: Path, trained_store: Path,
                                                      airflow_pg: AirflowPG,  # noqa: F811
                                                      request: pytest.FixtureRequest) -> None:
    cfg = write_config(tmp_path, sample_db, trained_store, schedule=SCHEDULE)
    results = load_config(cfg).results.path
    # The three runs below are the same Airflow run, in one dag.test() process; SCORING_FAULT is read when the
    # engine reaches a fault point, so each run gets its own (or none).
    runner = DagRunner(airflow_pg.env([cfg]))
    request.addfinalizer(runner.close)
    # Before publish writes anything (where "chunks ... are not staged" used to leave no row at all).
    output: list[str] = []
    line = runner.run([SCORE_DAY.isoformat()], env={"SCORING_FAULT": "publish_start=raise"}, output=output)[0]
    assert line["state"] == "failed"
    assert line["tasks"]["publish"] == "failed" and line["tasks"]["record_ledger"] == "failed"
    assert "fault injection: failed at publish_start" in "".join(output)
    rows = ledger(results)
    assert list(rows["status"]) == ["failed"]
    assert rows.iloc[0]["error"].startswith("tasks failed: publish;") and rows.iloc[0]["trigger"] == "airflow"
    assert json.loads(rows.iloc[0]["details"])["task_states"]["publish"] == "failed"
    shown = _runs_cli(cfg)
    assert [(r["day"], r["status"]) for r in shown] == [(SCORE_DAY.isoformat(), "failed")]
    assert published(results, SCORE_DAY).empty

    # After publish entered its row: that row is finalised as failed, and record_ledger adds none.
    line = runner.run([SCORE_DAY.isoformat()], env={"SCORING_FAULT": "before_commit=raise"})[0]
    assert line["state"] == "failed" and line["tasks"]["publish"] == "failed"
    rows = ledger(results)
    assert list(rows["status"]) == ["failed", "failed"]
    assert "fault injection: failed at before_commit" in rows.iloc[-1]["error"]
    assert len(_runs_cli(cfg)) == 2

    # The same run again without the fault: it publishes, and the ledger keeps the whole story.
    line = runner.run([SCORE_DAY.isoformat()], env={"SCORING_FAULT": None})[0]
    assert line["state"] == "success"
    assert list(ledger(results)["status"]) == ["failed", "failed", "success"]
    assert len(published(results, SCORE_DAY)) == 600


# --- issue 24: a manual run outside the schedule -----------------------------------------------------------------


def test_a_manual_run_of_a_day_that_has_not_ended_is_refused(
        tmp_path: Path, sample_db: Path, trained_store: Path, airflow_pg: AirflowPG) -> None:  # noqa: F811
    import datetime as dt

    cfg = write_config(tmp_path, sample_db, trained_store, schedule=SCHEDULE)
    today = dt.datetime.now(dt.UTC).date()
    output: list[str] = []
    line = run_days(airflow_pg.env([cfg]), ["2026-03-09"], conf={"day": today.isoformat()}, output=output)[0]
    assert line["state"] == "failed" and line["tasks"]["plan"] == "failed"
    assert line["tries"]["plan"] == 1  # a user mistake: no retry
    assert f"business day {today} has not ended yet in UTC" in "".join(output)
    rows = ledger(load_config(cfg).results.path)
    assert list(rows["status"]) == ["failed"] and rows.iloc[0]["error"].startswith("tasks failed: plan;")
    assert str(rows.iloc[0]["day"])[:10] == today.isoformat()


def test_which_days_are_outside_the_schedule() -> None:
    import datetime as dt

    from scoring.dates import check_schedule_day

    now = dt.datetime(2026, 3, 8, 3, 0, tzinfo=dt.UTC)  # 2026-03-07 22:00 in New York
    check_schedule_day(dt.date(2026, 3, 7), dt.date(2026, 3, 1), "UTC", now)
    with pytest.raises(ConfigError, match=r"business day 2026-03-07 has not ended yet in America/New_York \(the "
                       r"latest complete day is 2026-03-06\)"):
        check_schedule_day(dt.date(2026, 3, 7), dt.date(2026, 3, 1), "America/New_York", now)
    with pytest.raises(ConfigError, match=r"has not ended yet"):  # an explicit day too
        check_schedule_day(dt.date(2026, 3, 9), dt.date(2026, 3, 1), "UTC", now, explicit=True)
    # Before the start date: refused when derived (a manual run of a DAG not started yet), scored when asked for.
    with pytest.raises(ConfigError, match="before schedule.start_date 2026-03-01: pass the day to score as the "
                       "'day' param"):
        check_schedule_day(dt.date(2026, 2, 28), dt.date(2026, 3, 1), "UTC", now)
    check_schedule_day(dt.date(2026, 2, 28), dt.date(2026, 3, 1), "UTC", now, explicit=True)


# --- the publish pool -------------------------------------------------------------------------------------------


def test_scoring_airflow_init_creates_the_publish_pool(airflow_pg: AirflowPG) -> None:  # noqa: F811
    env = {k: v for k, v in airflow_pg.env([]).items() if not k.startswith("SCORING_AIRFLOW_")}
    assert airflow_pg.query("SELECT slots FROM slot_pool WHERE pool = 'scoring_publish'") == []
    out = subprocess.run([str(BIN / "scoring"), "airflow", "init"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert airflow_pg.query("SELECT slots FROM slot_pool WHERE pool = 'scoring_publish'") == [(1,)]
    again = subprocess.run([str(BIN / "scoring"), "airflow", "init", "--slots", "2"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert airflow_pg.query("SELECT slots FROM slot_pool WHERE pool = 'scoring_publish'") == [(2,)]
    assert os.environ.get("AIRFLOW_HOME") != env["AIRFLOW_HOME"]  # the test's own home, not the caller's

    # deploy.cluster's env.sh is all a fresh shell needs to reach that metadata DB with the airflow CLI.
    from deploy.cluster import write_shell_env

    script = write_shell_env(airflow_pg.home, env)
    assert "JWT" not in script.read_text()
    shell = subprocess.run(["bash", "-c", f"source {script} && airflow pools get scoring_publish -o json"],
                           env={"PATH": "/usr/bin:/bin", "HOME": str(airflow_pg.home)}, cwd=airflow_pg.home,
                           capture_output=True, text=True, timeout=300)
    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert str(json.loads(shell.stdout[shell.stdout.index("["):])[0]["slots"]) == "2"
