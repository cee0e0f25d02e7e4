"""Batch-level rules on the whole interval, the error threshold, conservation and output checks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import joblib
import pytest

from scoring.config import load_config
from scoring.errors import ValidationFailed
from scoring.models.registry import register_model
from scoring.models.store import ModelStore
from scoring.quality.data_docs import build_docs
from scoring.run import pipeline
from tests.conftest import START, write_config
from tests.helpers import ledger, published, source_day
from tests.helpers import user_module as load_user_module
from tests.quality.helpers import (
    CLEAN_DAY,
    KEY,
    day_filter,
    dirty_source,
    edit_suite,
    keys_where,
    last_run,
    quarantine,
)

EMPTY_DAY = START - dt.timedelta(days=30)
ROW_COUNT = "expect_table_row_count_to_be_between"


def test_conservation_on_a_day_with_every_kind_of_bad_row(tmp_path, sample_db, store) -> None:
    db = dirty_source(
        tmp_path, sample_db,
        f"UPDATE loan_applications SET loan_amount = NULL WHERE {KEY} % 101 = 1",
        f"UPDATE loan_applications SET annual_income = 'inf'::DOUBLE WHERE {KEY} % 101 = 2",
        f"UPDATE loan_applications SET age = -3 WHERE {KEY} % 101 IN (2, 3)",  # row 2 breaks two rules
        f"UPDATE loan_applications SET {KEY} = NULL WHERE {KEY} % 101 = 4",
        "INSERT INTO loan_applications SELECT * FROM loan_applications "
        f"WHERE {day_filter(CLEAN_DAY)} AND {KEY} % 101 = 5",
    )
    cfg = load_config(write_config(tmp_path, db, store, chunking={"rows_per_chunk": 64},
                                   validation={"error_threshold": 0.2}))
    result = pipeline.run_day(cfg, CLEAN_DAY)
    src = source_day(db, CLEAN_DAY)
    run = ledger(cfg.results.path).iloc[-1]
    assert run["status"] == "success"
    assert run["rows_in"] == len(src) == result.rows_scored + result.rows_rejected
    assert run["rows_scored"] == result.rows_scored and run["rows_rejected"] == result.rows_rejected
    q = quarantine(cfg.results.path, result.run_id)
    out = published(cfg.results.path, CLEAN_DAY)
    assert len(q) == result.rows_rejected and len(out) == result.rows_scored
    # Every source row is either scored or quarantined, once: one quarantine record per rejected row.
    expected_bad = len(src[src[KEY].isna() | (src[KEY] % 101).isin([2, 3, 5])])  # both copies of a duplicate
    assert result.rows_rejected == expected_bad
    # A NULL the model takes (its HistGradientBoosting handles NaN) is scored, and counted by a warning rule.
    assert keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 101 = 1") <= set(out["source_key"])
    keys = src[KEY].dropna().astype("int64").astype(str)
    assert set(out["source_key"]) | set(q["source_key"].dropna()) == set(keys)
    assert not set(out["source_key"]) & set(q["source_key"].dropna())
    assert q["source_key"].isna().sum() == src[KEY].isna().sum()
    # The row failing two rules is recorded once, under the first rule in suite order (age comes before income).
    two = q[q["source_key"].isin(keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 101 = 2"))]
    assert set(two["column_name"]) == {"age"}
    # ... while each rule's own count covers every row it fails.
    rules = {(r["column"], r["type"]): r["unexpected_count"]
             for r in last_run(cfg.results.path)["details"]["validation"]["rules"]}
    assert rules[("annual_income", "expect_column_values_to_be_between")] == (src[KEY] % 101 == 2).sum()


def test_error_threshold_fails_the_run_publishes_nothing_and_keeps_the_quarantine(tmp_path, sample_db, store) -> None:
    good = load_config(write_config(tmp_path, sample_db, store))
    first = pipeline.run_day(good, CLEAN_DAY)
    before = published(good.results.path, CLEAN_DAY)
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET loan_amount = -1e9 WHERE {KEY} % 30 = 0")
    share = len(keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 30 = 0")) / 600
    assert 0.02 < share < 0.05
    cfg = load_config(write_config(tmp_path, db, store, validation={"error_threshold": 0.02}))
    with pytest.raises(ValidationFailed, match=r"rows quarantined \(3\.\d%\), above validation.error_threshold 2\.0%"):
        pipeline.run_day(cfg, CLEAN_DAY)
    after = published(cfg.results.path, CLEAN_DAY)
    assert set(after["run_id"]) == {first.run_id} and len(after) == len(before)
    run = last_run(cfg.results.path)
    assert run["status"] == "failed" and "error_threshold" in run["error"]
    # a failed run published nothing: rows_scored 0, what it staged in rows_staged
    assert run["rows_scored"] == 0 and run["rows_in"] == 600 == run["rows_staged"] + run["rows_rejected"]
    q = quarantine(cfg.results.path, run["run_id"])
    assert len(q) == run["rows_rejected"] and set(q["column_name"]) == {"loan_amount"}
    assert run["details"]["validation"]["success"] is False and "data_docs" not in run["details"]
    page = build_docs(cfg, run_id=run["run_id"]).read_text()  # a failed run's Data Docs, from the ledger
    assert run["run_id"] in page and "Failed" in page
    assert list(ledger(cfg.results.path)["status"]) == ["success", "failed"]
    # Under the threshold the same data publishes, and replaces the day's quarantine partition.
    cfg = load_config(write_config(tmp_path, db, store, validation={"error_threshold": 0.05}))
    ok = pipeline.run_day(cfg, CLEAN_DAY)
    assert set(quarantine(cfg.results.path)["run_id"]) == {ok.run_id}
    assert set(published(cfg.results.path, CLEAN_DAY)["run_id"]) == {ok.run_id}


def test_a_day_with_only_bad_rows_fails_and_shows_every_row(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET age = -1 WHERE {day_filter(CLEAN_DAY)}")
    cfg = load_config(write_config(tmp_path, db, store))
    with pytest.raises(ValidationFailed, match=r"600 of 600 rows quarantined \(100\.0%\)"):
        pipeline.run_day(cfg, CLEAN_DAY)
    run = last_run(cfg.results.path)
    assert (run["status"], run["rows_in"], run["rows_scored"], run["rows_rejected"]) == ("failed", 600, 0, 600)
    assert "expect_column_values_to_be_between on 'age' (600)" in run["error"]
    q = quarantine(cfg.results.path, run["run_id"])
    assert len(q) == 600 and set(q["column_name"]) == {"age"}
    assert len(published(cfg.results.path, CLEAN_DAY)) == 0


def test_empty_day_succeeds_with_a_warning_or_fails_when_the_suite_says_so(cfg) -> None:
    result = pipeline.run_day(cfg, EMPTY_DAY)
    assert (result.rows_in, result.rows_scored, result.rows_rejected) == (0, 0, 0)
    run = last_run(cfg.results.path)
    assert run["status"] == "success"
    assert any(ROW_COUNT in w and "observed 0" in w for w in run["details"]["validation"]["warnings"])

    def critical(exp: dict) -> None:
        if exp["type"] == ROW_COUNT:
            exp["severity"] = "critical"

    edit_suite(Path(run["details"]["suite"]), critical)
    with pytest.raises(ValidationFailed, match=f"{ROW_COUNT}: observed 0, expected {{'min_value': 1}}"):
        pipeline.run_day(cfg, EMPTY_DAY)
    assert last_run(cfg.results.path)["status"] == "failed"


def test_share_of_nulls_per_column_is_checked_on_the_whole_interval(tmp_path, sample_db, store) -> None:
    # age had 1-2% missing in training and the model takes NaN: 40% nulls are scored with a warning on the
    # whole interval's share; a user who makes the rule critical fails such a day.
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET age = NULL WHERE {KEY} % 5 IN (0, 1)")
    cfg = load_config(write_config(tmp_path, db, store, chunking={"rows_per_chunk": 50}))
    result = pipeline.run_day(cfg, CLEAN_DAY)
    run = last_run(cfg.results.path)
    assert (run["status"], result.rows_scored, result.rows_rejected) == ("success", 600, 0)
    assert any("expect_column_proportion_of_non_null_values_to_be_between on 'age': observed 0.5" in w
               for w in run["details"]["validation"]["warnings"])

    def critical(exp: dict) -> None:
        if exp["type"] == "expect_column_proportion_of_non_null_values_to_be_between":
            exp["severity"] = "critical"

    edit_suite(Path(run["details"]["suite"]), critical)
    with pytest.raises(ValidationFailed, match="expect_column_proportion_of_non_null_values_to_be_between on 'age': "
                                               r"observed 0\.5\d+"):
        pipeline.run_day(cfg, CLEAN_DAY)
    run = last_run(cfg.results.path)
    assert run["rows_rejected"] == 0 and run["status"] == "failed"
    assert set(published(cfg.results.path, CLEAN_DAY)["run_id"]) == {result.run_id}


OVERCONFIDENT = Path(__file__).resolve().parent / "user_code" / "overconfident.py"


def _overconfident() -> Any:
    """The user's own module ``overconfident`` (registered with ``--code``)."""
    return load_user_module("overconfident", OVERCONFIDENT)


def test_output_checks_stop_a_model_producing_bad_scores(tmp_path, sample_db, store) -> None:
    frame = source_day(sample_db, CLEAN_DAY - dt.timedelta(days=1))
    features = [f["name"] for f in ModelStore(store).get("loan_default", 1).features]
    artifact = tmp_path / "broken.joblib"
    joblib.dump(_overconfident().OverconfidentModel(features), artifact)
    mv = register_model(ModelStore(store), "loan_default", artifact, frame, exclude={KEY, "applied_at", "defaulted"},
                        code=[OVERCONFIDENT])  # the user's own class: outside the allow-list, its file kept
    cfg = load_config(write_config(tmp_path, sample_db, store))
    with pytest.raises(ValidationFailed, match=r"output check: \d+ predictions have a null or NaN score or one "
                                               r"outside \[0, 1\]"):
        pipeline.run_day(cfg, CLEAN_DAY, version=mv.version)
    run = last_run(cfg.results.path)
    assert run["status"] == "failed" and run["model_version"] == mv.version
    assert len(published(cfg.results.path, CLEAN_DAY)) == 0
    assert json.dumps(run["details"])  # the ledger still explains the run


def test_values_quoted_in_messages_and_the_ledger_are_bounded() -> None:
    from scoring.quality.batch_rules import MAX_VALUE_CHARS, row_result

    huge = "x" * 10_000_000
    result = row_result(10, 3, 0, [huge, b"y" * 500, 7, *["z"] * 50])
    assert len(result["partial_unexpected_list"]) == 20
    first = result["partial_unexpected_list"][0]
    assert first.startswith("x" * MAX_VALUE_CHARS) and len(first) < MAX_VALUE_CHARS + 40 and "9999900 more" in first
    assert result["partial_unexpected_list"][2] == 7
