"""Fault injection: real `scoring run` processes SIGKILLed at named stages (SCORING_FAULT), concurrent runs,
a reader holding the DuckDB lock. After each kill the partition is exactly the old or the new one, the next
run converges, marks the dead attempt interrupted and leaves no staging behind."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import duckdb
import pytest

from scoring.config import load_config
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published
from tests.run.fault_helpers import assert_exact, cli, expected_scores, staged_files, wait_for

OTHER_DAY = SCORE_DAY - dt.timedelta(days=1)


@pytest.mark.parametrize(("stage", "published_new"), [
    ("after_ledger_insert", False), ("mid_extract", False), ("after_chunk_1", False),
    ("before_commit", False), ("after_commit", True),
])
def test_kill_at_stage_leaves_old_or_new_and_next_run_converges(tmp_path: Path, sample_db: Path, store: Path,
                                                                  stage: str, published_new: bool) -> None:
    cfg_path = write_config(tmp_path, sample_db, store)
    cfg = load_config(cfg_path)
    old = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=200)
    killed = cli(cfg_path, SCORE_DAY, stage)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    pred = published(cfg.results.path, SCORE_DAY)
    runs = ledger(cfg.results.path)
    dead = runs.iloc[-1]
    assert set(pred["run_id"]) == {dead["run_id"] if published_new else old.run_id}
    assert dead["status"] == ("success" if published_new else "running")
    expected = expected_scores(sample_db, store, SCORE_DAY)
    assert_exact(pred, expected, old.rows_in, old.rows_rejected)

    again = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=200)
    runs = ledger(cfg.results.path).set_index("run_id")
    assert runs.loc[dead["run_id"], "status"] == ("success" if published_new else "interrupted")
    if not published_new:
        assert "is gone" in runs.loc[dead["run_id"], "error"]
    assert runs.loc[again.run_id, "status"] == "success" and (runs["status"] != "running").all()
    pred = published(cfg.results.path, SCORE_DAY)
    assert set(pred["run_id"]) == {again.run_id}
    assert_exact(pred, expected, again.rows_in, again.rows_rejected)
    assert staged_files(cfg.results.staging_dir) == []


def test_older_run_never_overwrites_a_newer_one(tmp_path: Path, sample_db: Path, store: Path) -> None:
    """The earlier-started run is held before publish while a later run publishes; it then ends superseded."""
    cfg_path = write_config(tmp_path, sample_db, store)
    cfg = load_config(cfg_path)
    gate = tmp_path / "go"
    older = cli(cfg_path, SCORE_DAY, f"before_publish=wait:{gate}", wait=False)
    try:
        wait_for(Path(f"{gate}.reached"))
        newer = pipeline.run_day(cfg, SCORE_DAY)
        gate.touch()
        out, err = older.communicate(timeout=120)
    finally:
        if older.poll() is None:
            older.kill()
    assert older.returncode == 0, err[-2000:]
    assert "superseded by run " + newer.run_id in " ".join(err.split())
    runs = ledger(cfg.results.path).set_index("run_id")
    loser = runs[runs.index != newer.run_id].iloc[0]
    assert loser["status"] == "superseded" and loser["rows_scored"] == 0 and loser["rows_staged"] == newer.rows_scored
    assert loser["started_at"] < runs.loc[newer.run_id, "started_at"]
    pred = published(cfg.results.path, SCORE_DAY)
    assert set(pred["run_id"]) == {newer.run_id}
    assert_exact(pred, expected_scores(sample_db, store, SCORE_DAY), newer.rows_in, newer.rows_rejected)
    assert staged_files(cfg.results.staging_dir) == []


def test_reader_holding_the_lock_fails_cleanly_and_the_rerun_only_publishes(tmp_path: Path, sample_db: Path,
                                                                            store: Path) -> None:
    cfg_path = write_config(tmp_path, sample_db, store, results={
        "kind": "duckdb", "path": str(tmp_path / "results.duckdb"), "staging_dir": str(tmp_path / "staging"),
        "lock_timeout_s": 1.5})
    cfg = load_config(cfg_path)
    pipeline.run_day(cfg, OTHER_DAY)  # the results file exists
    gate = tmp_path / "go"
    proc = cli(cfg_path, SCORE_DAY, f"before_publish=wait:{gate}", wait=False)
    try:
        wait_for(Path(f"{gate}.reached"))
        with duckdb.connect(str(cfg.results.path), read_only=True) as reader:  # an analyst's session
            reader.sql("SELECT count(*) FROM predictions").fetchall()
            gate.touch()
            out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = " ".join(err.split())
    assert proc.returncode == 1 and "Traceback" not in err
    assert "is locked by" in text and "waiting up to 2 s" in text and "gave up after 2 s" in text
    assert staged_files(cfg.results.staging_dir)  # kept for the retry
    rerun = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=200)
    runs = ledger(cfg.results.path)
    last = runs.iloc[-1]
    assert last["status"] == "success" and '"chunks_reused": 3' in last["details"]
    assert (runs["status"] != "running").all()
    assert_exact(published(cfg.results.path, SCORE_DAY), expected_scores(sample_db, store, SCORE_DAY),
                 rerun.rows_in, rerun.rows_rejected)
    assert staged_files(cfg.results.staging_dir) == []
