from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pytest

from scoring.config import load_config
from scoring.errors import ModelStoreError, SchemaError, SourceError
from scoring.models.store import ModelStore
from scoring.run import pipeline
from scoring.run.backfill import backfill
from scoring.storage.results import duckdb_store
from tests.conftest import SCORE_DAY, START, write_config
from tests.helpers import ledger, published, source_day


def test_scores_equal_the_models_own_predict_proba(cfg, sample_db: Path, store: Path) -> None:
    result = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=97)  # many uneven chunks
    src = source_day(sample_db, SCORE_DAY)
    model = ModelStore(store).load(ModelStore(store).get("loan_default", 1))
    expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
    out = published(cfg.results.path, SCORE_DAY)
    assert len(out) == len(src) == result.rows_scored
    assert out["source_key"].is_unique
    got = out.set_index("source_key")["score"]
    np.testing.assert_allclose(got.to_numpy(), [expected[k] for k in got.index], rtol=0, atol=1e-9)
    assert (out["label"] == (out["score"] >= 0.5).astype(int)).all()
    assert set(out["model_version"]) == {1} and set(out["day"].astype(str)) == {str(SCORE_DAY)}
    assert set(out["run_id"]) == {result.run_id}
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success"
    assert row["rows_in"] == row["rows_scored"] + row["rows_rejected"] == len(src)


def test_rerun_replaces_the_day_and_leaves_other_days(cfg) -> None:
    other = SCORE_DAY - dt.timedelta(days=1)
    pipeline.run_day(cfg, other)
    first = pipeline.run_day(cfg, SCORE_DAY)
    second = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=50)
    out = published(cfg.results.path)
    today = out[out["day"].astype(str) == str(SCORE_DAY)]
    assert len(today) == first.rows_scored and today["source_key"].is_unique
    assert set(today["run_id"]) == {second.run_id}
    assert (out["day"].astype(str) == str(other)).sum() > 0
    assert list(ledger(cfg.results.path)["status"]) == ["success"] * 3


def test_failure_before_commit_leaves_previous_partition(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    good = pipeline.run_day(cfg, SCORE_DAY)
    before = published(cfg.results.path, SCORE_DAY)

    def boom(run) -> None:
        raise RuntimeError("injected crash before commit")

    monkeypatch.setattr(duckdb_store, "before_commit", boom)
    with pytest.raises(RuntimeError, match="injected"):
        pipeline.run_day(cfg, SCORE_DAY)
    after = published(cfg.results.path, SCORE_DAY)
    assert len(after) == len(before) and set(after["run_id"]) == {good.run_id}
    runs = ledger(cfg.results.path)
    assert list(runs["status"]) == ["success", "failed"]
    assert "injected crash" in runs.iloc[-1]["error"]
    assert any(cfg.results.staging_dir.rglob("*.parquet"))  # kept: the rerun resumes from them
    monkeypatch.undo()
    rerun = pipeline.run_day(cfg, SCORE_DAY)
    assert ledger(cfg.results.path).iloc[-1]["details"].count('"chunks_reused": 1') == 1
    assert rerun.rows_scored == good.rows_scored and not any(cfg.results.staging_dir.rglob("*.parquet"))


def test_backfill_three_days_each_its_own_run(cfg) -> None:
    days = [SCORE_DAY - dt.timedelta(days=2), SCORE_DAY - dt.timedelta(days=1), SCORE_DAY]
    outcomes = backfill(cfg, days[0], days[-1])
    assert [o.day for o in outcomes] == days and all(o.error is None for o in outcomes)
    out = published(cfg.results.path)
    assert sorted(set(out["day"].astype(str))) == [str(d) for d in days]
    assert out.groupby("day")["source_key"].apply(lambda s: s.is_unique).all()
    runs = ledger(cfg.results.path)
    assert len(runs) == 3 and set(runs["trigger"]) == {"backfill"}
    assert list(runs["rows_scored"]) == [o.result.rows_scored for o in outcomes]


def test_backfill_continues_past_a_failed_day(tmp_path: Path, sample_db: Path, store: Path) -> None:
    # A copy of the source missing one day's rows is fine (empty day); a model that cannot load is not.
    cfg = load_config(write_config(tmp_path, sample_db, store))
    bad_store = ModelStore(store)
    artifact = bad_store.get("loan_default", 1).artifact
    outcomes = backfill(cfg, SCORE_DAY - dt.timedelta(days=1), SCORE_DAY)
    assert all(o.error is None for o in outcomes)
    artifact.write_bytes(b"corrupt")
    outcomes = backfill(cfg, SCORE_DAY - dt.timedelta(days=1), SCORE_DAY)
    assert [bool(o.error) for o in outcomes] == [True, True]
    assert "checksum mismatch" in outcomes[0].error
    assert len(published(cfg.results.path)) > 0  # earlier output still there


def test_empty_day_publishes_zero_rows_and_succeeds(cfg) -> None:
    result = pipeline.run_day(cfg, START - dt.timedelta(days=30))
    assert (result.rows_in, result.rows_scored, result.rows_rejected) == (0, 0, 0)
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success" and row["rows_in"] == 0


def test_null_keys_are_quarantined_not_dropped(tmp_path: Path, sample_db: Path, store: Path) -> None:
    db = tmp_path / "src.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"ATTACH '{sample_db}' AS s (READ_ONLY)")
        con.execute("CREATE TABLE loan_applications AS SELECT * FROM s.loan_applications")
        con.execute("UPDATE loan_applications SET application_id = NULL WHERE application_id % 100 = 7")
    cfg = load_config(write_config(tmp_path, db, store))
    result = pipeline.run_day(cfg, SCORE_DAY)
    assert result.rows_rejected > 0
    assert result.rows_in == result.rows_scored + result.rows_rejected
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        q = con.sql("SELECT column_name, rule, count(*) FROM quarantine GROUP BY ALL").fetchall()
    assert q == [("application_id", "expect_column_values_to_not_be_null", result.rows_rejected)]


def test_workers_give_the_same_predictions(tmp_path: Path, sample_db: Path, store: Path) -> None:
    configs = []
    for name, workers in (("serial", 1), ("parallel", 2)):
        (tmp_path / name).mkdir()
        configs.append(load_config(write_config(tmp_path / name, sample_db, store,
                                                chunking={"rows_per_chunk": 100}, workers=workers)))
    for cfg in configs:
        pipeline.run_day(cfg, SCORE_DAY)
    a, b = (published(c.results.path, SCORE_DAY) for c in configs)
    assert len(a) > 100
    np.testing.assert_array_equal(a["source_key"], b["source_key"])
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-12)


def test_missing_table_unknown_model_and_retyped_column_fail_with_named_errors(
        tmp_path: Path, sample_db: Path, store: Path) -> None:
    cfg = load_config(write_config(tmp_path, sample_db, store, source={"table": "no_such_table"}))
    with pytest.raises(SourceError, match="no_such_table"):
        pipeline.run_day(cfg, SCORE_DAY)
    cfg = load_config(write_config(tmp_path, sample_db, store, model={"name": "ghost"}))
    with pytest.raises(ModelStoreError, match="unknown model 'ghost'"):
        pipeline.run_day(cfg, SCORE_DAY)
    query = "SELECT * REPLACE (CAST(credit_score AS VARCHAR) AS credit_score) FROM loan_applications"
    cfg = load_config(write_config(tmp_path, sample_db, store, source={"table": None, "query": query}))
    with pytest.raises(SchemaError, match="'credit_score' has type string, the model expects float"):
        pipeline.run_day(cfg, SCORE_DAY)
    query = "SELECT * EXCLUDE (state) FROM loan_applications"
    cfg = load_config(write_config(tmp_path, sample_db, store, source={"table": None, "query": query}))
    with pytest.raises(SchemaError, match="required column 'state'"):
        pipeline.run_day(cfg, SCORE_DAY)


def test_custom_select_is_restricted_to_the_interval(tmp_path: Path, sample_db: Path, store: Path) -> None:
    # The SELECT returns every day; only the run's day may be scored into its partition.
    query = "SELECT * FROM loan_applications WHERE credit_score IS NOT NULL OR credit_score IS NULL"
    cfg = load_config(write_config(tmp_path, sample_db, store, source={"table": None, "query": query}))
    result = pipeline.run_day(cfg, SCORE_DAY)
    assert result.rows_in == len(source_day(sample_db, SCORE_DAY))
