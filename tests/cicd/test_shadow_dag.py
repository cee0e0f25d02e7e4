"""The scoring DAG with a challenger: ``dag.test()`` of one day publishes what ``scoring run`` publishes."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from scoring.config import load_config
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.dags.airflow_env import airflow_db_template, airflow_env, airflow_home, run_days  # noqa: F401

SCHEDULE = {"start_date": "2026-03-01", "retries": 0, "retry_delay_s": 1, "task_timeout_min": 10}


def _table(results: Path, name: str) -> pd.DataFrame:
    with duckdb.connect(str(results), read_only=True) as con:
        return con.sql(f"SELECT * EXCLUDE (run_id) FROM {name} ORDER BY ALL").to_df()


def test_dag_scores_the_challenger_as_mapped_chunks(tmp_path: Path, sample_db: Path, store: Path,
                                                    airflow_home: Path) -> None:  # noqa: F811
    model = {"store": str(store), "name": "loan_default", "challengers": ["challenger"]}
    (tmp_path / "dag").mkdir()
    (tmp_path / "cli").mkdir()
    dag_cfg = write_config(tmp_path / "dag", sample_db, store, model=model, schedule=SCHEDULE)
    cli_cfg = load_config(write_config(tmp_path / "cli", sample_db, store, model=model, schedule=SCHEDULE))
    [line] = run_days(airflow_env(airflow_home, [dag_cfg]), [SCORE_DAY.isoformat()], conf={"rows_per_chunk": 200})
    assert line["state"] == "success", line
    pipeline.run_day(cli_cfg, SCORE_DAY, rows_per_chunk=200)
    dag_results = load_config(dag_cfg).results.path
    mapped = {t: s for t, s in line["tasks"].items() if t.startswith("score_chunk")}
    assert len(mapped) == 2 * 3 and set(mapped.values()) == {"success"}  # 3 champion + 3 challenger chunks
    for name in ("shadow_predictions", "shadow_summary"):
        a = _table(dag_results, name).drop(columns=["scored_at"], errors="ignore")
        b = _table(cli_cfg.results.path, name).drop(columns=["scored_at"], errors="ignore")
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-12)
