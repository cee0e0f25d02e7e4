"""Failure paths of the scoring DAG under a real ``dag.test()``: a chunk that cannot be read, a schema mismatch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from scoring.config import load_config
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.dags.airflow_env import DagRunner, airflow_db_template, airflow_env, airflow_home, run_days  # noqa: F401
from tests.helpers import ledger, published

SCHEDULE = {"start_date": "2026-03-01", "retries": 1, "retry_delay_s": 1, "task_timeout_min": 10}
ROWS_PER_CHUNK = 150
COMPARED = ["day", "source_key", "score", "label", "model_name", "model_version"]


def _source_with_view(sample_db: Path, target: Path) -> int:
    """A copy of the sample whose rows are read through a view; returns the key the view can fail on."""
    shutil.copy(sample_db, target)
    bad_key = SCORE_DAY.toordinal() * 100_000_000 + 300  # the 301st row of the day: chunk 2 of 150-row chunks
    with duckdb.connect(str(target)) as con:
        con.execute("ALTER TABLE loan_applications RENAME TO base_rows")
        con.execute("CREATE VIEW loan_applications AS SELECT * FROM base_rows")
        keys = [r[0] for r in con.sql("SELECT application_id FROM loan_applications WHERE CAST(applied_at AS DATE) "
                                      "= $1 ORDER BY 1", params=[SCORE_DAY]).fetchall()]
    assert bad_key in keys and keys.index(bad_key) // ROWS_PER_CHUNK == 2
    return bad_key


def _set_view(db: Path, bad_key: int | None) -> None:
    """Make reading the row with ``bad_key`` fail (a read error in one chunk), or repair the view."""
    expr = ("* REPLACE (CASE WHEN application_id = $bad THEN error('read failed at application ' || $bad) "
            "ELSE credit_score END AS credit_score)").replace("$bad", str(bad_key)) if bad_key else "*"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE OR REPLACE VIEW loan_applications AS SELECT {expr} FROM base_rows")


def test_failed_chunk_keeps_the_partition_and_the_rerun_reuses_good_chunks(
        tmp_path: Path, sample_db: Path, store: Path, airflow_home: Path,  # noqa: F811
        request: pytest.FixtureRequest) -> None:
    source = tmp_path / "source.duckdb"
    bad_key = _source_with_view(sample_db, source)
    cfg_path = write_config(tmp_path, source, store, schedule=SCHEDULE)
    cfg = load_config(cfg_path)
    good = pipeline.run_day(cfg, SCORE_DAY)  # the previous good partition, from the CLI path
    before = published(cfg.results.path, SCORE_DAY)
    env = airflow_env(airflow_home, [cfg_path])
    runner = DagRunner(env)  # one process for both runs (the rerun is the same Airflow run again)
    request.addfinalizer(runner.close)

    _set_view(source, bad_key)
    failed = runner.run([SCORE_DAY.isoformat()], conf={"rows_per_chunk": ROWS_PER_CHUNK})[0]
    assert failed["state"] == "failed"
    tasks, tries = failed["tasks"], failed["tries"]
    assert {k: v for k, v in tasks.items() if k.startswith("score_chunk")} == {
        "score_chunk_0": "success", "score_chunk_1": "success", "score_chunk_2": "failed", "score_chunk_3": "success"}
    assert tries["score_chunk_2"] == 2  # a source read error is transient: retried once, as configured
    assert tasks["publish"] == "upstream_failed" and tasks["record_ledger"] == "failed"

    after = published(cfg.results.path, SCORE_DAY)
    pd.testing.assert_frame_equal(after, before)  # untouched, still the CLI run's rows
    assert set(after["run_id"]) == {good.run_id}
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "failed" and row["trigger"] == "airflow"
    assert row["error"].startswith("tasks failed: score_chunk_2;")
    # The good chunks are staged and verified under the run's folder; the failed one is not.
    manifests = sorted(cfg.results.staging_dir.rglob("chunk-*.json"))
    assert [p.stem for p in manifests] == ["chunk-00000", "chunk-00001", "chunk-00003"]
    staged = {p.stem: json.loads(p.read_text()) for p in manifests}
    assert sum(m["rows_in"] for m in staged.values()) == 450
    assert len({p.parent for p in manifests}) == 1 and manifests[0].parent.parent.name == "manual__2026-03-07T00_00_00_00_00"  # logical date = the day

    _set_view(source, None)  # the source recovers; run the same Airflow run again (as a clear would)
    rerun = runner.run([SCORE_DAY.isoformat()], conf={"rows_per_chunk": ROWS_PER_CHUNK})[0]
    assert rerun["state"] == "success" and rerun["run_id"] == failed["run_id"]
    runs = ledger(cfg.results.path)
    assert list(runs["status"]) == ["success", "failed", "success"]
    details = json.loads(runs.iloc[-1]["details"])
    assert details["chunks"] == 4 and details["chunks_reused"] == 3
    assert runs.iloc[-1]["rows_in"] == 600 == runs.iloc[-1]["rows_scored"]
    final = published(cfg.results.path, SCORE_DAY)
    pd.testing.assert_frame_equal(final[COMPARED], before[COMPARED])
    assert set(final["run_id"]) == {runs.iloc[-1]["run_id"]}
    assert not list(cfg.results.staging_dir.rglob("chunk-*"))


def test_schema_mismatch_fails_fast_without_retry(tmp_path: Path, sample_db: Path, store: Path,
                                                  airflow_home: Path) -> None:  # noqa: F811
    query = "SELECT * EXCLUDE (state) FROM loan_applications"
    cfg_path = write_config(tmp_path, sample_db, store, schedule={**SCHEDULE, "retry_delay_s": 600},
                            source={"table": None, "query": query})
    line = run_days(airflow_env(airflow_home, [cfg_path]), [SCORE_DAY.isoformat()], timeout=300)[0]
    assert line["state"] == "failed"
    # task plan validates what it planned: the mismatch fails it at once
    assert line["tasks"]["plan"] == "failed" and line["tasks"]["record_ledger"] == "failed"
    assert line["tries"]["plan"] == 1  # a retry 600 s later would only fail again
    row = ledger(Path(load_config(cfg_path).results.path)).iloc[-1]
    assert row["status"] == "failed" and row["error"].startswith("tasks failed: plan;")
    assert row["model_version"] is not None and not pd.isna(row["model_version"])  # the plan reached the ledger
