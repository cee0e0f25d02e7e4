"""The scoring DAG run with a real ``dag.test()`` on sample data equals the CLI, day by day."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.conftest import SCORE_DAY, write_config
from tests.dags.airflow_env import BIN, DAG_ID, airflow_db_template, airflow_env, run_days  # noqa: F401
from tests.helpers import ledger, published

DAYS = [SCORE_DAY - dt.timedelta(days=2), SCORE_DAY - dt.timedelta(days=1), SCORE_DAY]
COMPARED = ["day", "source_key", "score", "label", "model_name", "model_version"]
SCHEDULE = {"start_date": "2026-03-01", "retries": 0, "retry_delay_s": 1, "task_timeout_min": 10}


def cli(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([str(BIN / "scoring"), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def table(results: Path, name: str) -> pd.DataFrame:
    with duckdb.connect(str(results), read_only=True) as con:
        return con.sql(f"SELECT * FROM {name}").to_df()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sample_db: Path, trained_store: Path,
         airflow_db_template: Path) -> dict:  # noqa: F811
    """Three days through dag.test() (chunks of 150 rows from the DAG's params), and the same days by the CLI."""
    import shutil

    root = tmp_path_factory.mktemp("dag_run")
    paths = {}
    for name in ("dag", "cli_day", "cli_backfill"):
        (root / name).mkdir()
        paths[name] = write_config(root / name, sample_db, trained_store, schedule=SCHEDULE)
    # Under Airflow the DAG's source and results come from Airflow Connections (environment variables);
    # the YAML paths of that config are decoys that must stay untouched.
    paths["dag"] = write_config(root / "dag", root / "dag" / "decoy_source.duckdb", trained_store, schedule=SCHEDULE,
                                source={"connection_id": "scoring_source"},
                                results={"connection_id": "scoring_results",
                                         "path": str(root / "dag" / "decoy_results.duckdb")})
    connections = {
        "AIRFLOW_CONN_SCORING_SOURCE": json.dumps({"conn_type": "duckdb", "extra": {"path": str(sample_db)}}),
        "AIRFLOW_CONN_SCORING_RESULTS": json.dumps({"conn_type": "duckdb", "host": "results.duckdb"}),
    }
    home = root / "airflow_home"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    output: list[str] = []
    lines = run_days(airflow_env(home, [paths["dag"]], **connections), [d.isoformat() for d in DAYS],
                     conf={"rows_per_chunk": 150}, output=output)
    assert not list((root / "dag").glob("decoy*"))
    cli("run", "--date", DAYS[0].isoformat(), "-c", str(paths["cli_day"]))
    cli("backfill", "--start", DAYS[0].isoformat(), "--end", DAYS[-1].isoformat(), "-c", str(paths["cli_backfill"]))
    for line in lines:
        print(f"dag.test {line['day']}: {line['state']} in {line['seconds']:.1f}s", file=sys.stderr)
    return {"lines": lines, "output": "".join(output), **{k: p.parent / "results.duckdb" for k, p in paths.items()},
            "staging": root / "dag" / "staging"}


def test_one_day_succeeds_and_equals_the_cli(runs: dict) -> None:
    first = runs["lines"][0]
    assert first["state"] == "success", first
    # The run scores the business day its logical date names (UTC here): the interval in the ledger.
    scored = json.loads(ledger(runs["dag"])["details"][0])["interval"]
    assert [scored["start"], scored["end"]] == [f"{DAYS[0]}T00:00:00+00:00", f"{DAYS[1]}T00:00:00+00:00"]
    # publish wrote the ledger's success row; record_ledger runs only when a task failed
    assert first["tasks"]["publish"] == "success" and first["tasks"]["record_ledger"] == "skipped"
    mapped = sorted(k for k in first["tasks"] if k.startswith("score_chunk_"))
    assert mapped == [f"score_chunk_{i}" for i in range(4)]  # 600 rows in chunks of 150 (DAG param)
    dag = published(runs["dag"], DAYS[0])
    cli_day = published(runs["cli_day"], DAYS[0])
    assert len(dag) == 600
    pd.testing.assert_frame_equal(dag[COMPARED], cli_day[COMPARED])
    assert dag["source_key"].is_unique


def test_three_day_loop_equals_scoring_backfill(runs: dict) -> None:
    assert [line["state"] for line in runs["lines"]] == ["success"] * 3
    dag, cli_all = published(runs["dag"]), published(runs["cli_backfill"])
    assert sorted(set(dag["day"].astype(str))) == [str(d) for d in DAYS]
    pd.testing.assert_frame_equal(dag[COMPARED], cli_all[COMPARED])
    dag_runs, cli_runs = ledger(runs["dag"]), ledger(runs["cli_backfill"])
    counts = ["day", "model_version", "status", "rows_in", "rows_rejected", "rows_scored"]
    pd.testing.assert_frame_equal(dag_runs[counts], cli_runs[counts])
    assert set(dag_runs["trigger"]) == {"airflow"} and set(cli_runs["trigger"]) == {"backfill"}
    assert set(dag["run_id"]) == set(dag_runs["run_id"])
    quarantine = ["day", "source_key", "column_name", "rule", "value"]
    pd.testing.assert_frame_equal(table(runs["dag"], "quarantine")[quarantine],
                                  table(runs["cli_backfill"], "quarantine")[quarantine])
    # The report summaries are published with the predictions on both paths.
    for name, key in (("prediction_stats", ["day"]), ("score_bins", ["day", "bin"])):
        dag_t = table(runs["dag"], name).drop(columns=["run_id"], errors="ignore").sort_values(key)
        cli_t = table(runs["cli_backfill"], name).drop(columns=["run_id"], errors="ignore").sort_values(key)
        assert len(dag_t) >= 3
        pd.testing.assert_frame_equal(dag_t.reset_index(drop=True), cli_t.reset_index(drop=True))


def test_publish_removes_the_stage_and_the_ledger_names_the_airflow_run(runs: dict) -> None:
    assert not list(runs["staging"].rglob("*.parquet"))
    details = [json.loads(d) for d in ledger(runs["dag"])["details"]]
    assert [d["chunks"] for d in details] == [4, 4, 4]
    assert [d["chunks_reused"] for d in details] == [0, 0, 0]
    assert [d["airflow_run_id"] for d in details] == [line["run_id"] for line in runs["lines"]]
    assert {d["airflow_run_type"] for d in details} == {"manual"}


def test_a_successful_run_logs_no_error_line(runs: dict) -> None:
    """publish reads the mapped chunks' XComs in one slice: iterating them used to request the item past the end,
    which the Task SDK logged as ``[error] XCom not found ... for task 'score_chunk'`` on every successful run."""
    assert [line["state"] for line in runs["lines"]] == ["success"] * 3
    assert all(sum(k.startswith("score_chunk_") for k in line["tasks"]) == 4 for line in runs["lines"])
    assert "XCom not found" not in runs["output"]
    errors = [line for line in runs["output"].splitlines() if "[error" in line or " ERROR " in line]
    assert errors == []
