"""Row-level gate on real DuckDB sources: bad rows are quarantined with column, rule and value, not scored."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.errors import SchemaError
from scoring.models.store import ModelStore
from scoring.quality.run_checks import prepare_quality
from scoring.run import pipeline
from scoring.storage.sources import open_source
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import published, source_day
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

NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
UNIQUE = "expect_column_values_to_be_unique"


def _run(tmp_path: Path, db: Path, store: Path, day: dt.date = CLEAN_DAY, **overrides):
    cfg = load_config(write_config(tmp_path, db, store, **overrides))
    return cfg, pipeline.run_day(cfg, day)


def _conserved(cfg, result) -> None:
    assert result.rows_in == result.rows_scored + result.rows_rejected
    assert len(published(cfg.results.path, result.day)) == result.rows_scored
    assert len(quarantine(cfg.results.path, result.run_id)) == result.rows_rejected


def test_clean_day_quarantines_nothing(cfg) -> None:
    result = pipeline.run_day(cfg, CLEAN_DAY)
    assert result.rows_rejected == 0 and result.rows_scored == result.rows_in == 600
    assert last_run(cfg.results.path)["details"]["validation"]["success"] is True


def test_nulls_the_model_takes_are_scored_exactly_and_a_critical_rule_quarantines_them(tmp_path, sample_db,
                                                                                        store) -> None:
    """The sample model (HistGradientBoosting, NaN-native) takes a NULL anywhere: the generated not-null rules are
    warnings, NULL rows are scored with the model's own output; a user who makes a rule critical quarantines."""
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET loan_amount = NULL WHERE {KEY} % 50 = 3",
                      f"UPDATE loan_applications SET age = NULL WHERE {KEY} % 50 = 4")
    cfg, result = _run(tmp_path, db, store)
    nulls = keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 50 IN (3, 4)")
    assert result.rows_rejected == 0 and len(nulls) > 10
    out = published(cfg.results.path, CLEAN_DAY).set_index("source_key")
    src = source_day(db, CLEAN_DAY)
    src = src[src[KEY].astype(str).isin(nulls)]
    ms = ModelStore(store)
    mv = ms.get("loan_default", 1)
    own = ms.load(mv).predict_proba(src[[f["name"] for f in mv.features]])[:, 1]
    assert abs(out.loc[src[KEY].astype(str), "score"].to_numpy() - own).max() <= 1e-9
    rules = {r["column"]: r for r in last_run(cfg.results.path)["details"]["validation"]["rules"]
             if r["type"] == NOT_NULL}
    assert rules["loan_amount"]["unexpected_count"] == len(src[src["loan_amount"].isna()])

    def critical(exp: dict) -> None:
        if exp["type"] == NOT_NULL and exp["kwargs"]["column"] == "loan_amount":
            exp["severity"] = "critical"

    edit_suite(Path(last_run(cfg.results.path)["details"]["suite"]), critical)
    result = pipeline.run_day(cfg, CLEAN_DAY)
    bad = keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 50 = 3")
    nullable = keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 50 = 4")
    q = quarantine(cfg.results.path, result.run_id)
    assert set(q["source_key"]) == bad and len(bad) > 5
    assert set(q["column_name"]) == {"loan_amount"} and set(q["rule"]) == {NOT_NULL}
    assert q["value"].isna().all()
    row = json.loads(q["row_json"].iloc[0])
    assert row["loan_amount"] is None and str(row[KEY]) == q["source_key"].iloc[0] and "state" in row
    scored = set(published(cfg.results.path, CLEAN_DAY)["source_key"])
    assert not scored & bad and nullable <= scored
    _conserved(cfg, result)


def test_nan_and_infinities(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db,
                      f"UPDATE loan_applications SET annual_income = 'inf'::DOUBLE WHERE {KEY} % 97 = 1",
                      f"UPDATE loan_applications SET annual_income = '-inf'::DOUBLE WHERE {KEY} % 97 = 2",
                      f"UPDATE loan_applications SET annual_income = 'nan'::DOUBLE WHERE {KEY} % 97 = 3",
                      f"UPDATE loan_applications SET loan_amount = 'nan'::DOUBLE WHERE {KEY} % 97 = 4")
    cfg, result = _run(tmp_path, db, store)
    q = quarantine(cfg.results.path, result.run_id)
    got = {(r.column_name, r.rule, r.value) for r in q.itertuples()}
    assert got == {("annual_income", BETWEEN, "inf"), ("annual_income", BETWEEN, "-inf")}
    day = day_filter(CLEAN_DAY)
    assert set(q["source_key"]) == keys_where(db, f"{day} AND {KEY} % 97 IN (1, 2)")
    nan_income = keys_where(db, f"{day} AND {KEY} % 97 IN (3, 4)")  # NaN is missing, and the model takes it
    assert nan_income and nan_income <= set(published(cfg.results.path, CLEAN_DAY)["source_key"])
    json.loads(q["row_json"].iloc[0])  # valid JSON even with NaN / inf in the row
    _conserved(cfg, result)


def test_values_out_of_range(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET age = 50000 WHERE {KEY} % 89 = 5",
                      f"UPDATE loan_applications SET credit_score = -100 WHERE {KEY} % 89 = 6")
    cfg, result = _run(tmp_path, db, store)
    q = quarantine(cfg.results.path, result.run_id)
    assert {(r.column_name, r.rule, r.value) for r in q.itertuples()} == {
        ("age", BETWEEN, "50000"), ("credit_score", BETWEEN, "-100")}
    assert set(q["source_key"]) == keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 89 IN (5, 6)")
    _conserved(cfg, result)


def test_unseen_categories_are_counted_by_default_and_quarantined_when_the_suite_forbids_them(
        tmp_path, sample_db, store) -> None:
    cfg, result = _run(tmp_path, sample_db, store, day=SCORE_DAY)
    unseen = keys_where(sample_db, f"{day_filter(SCORE_DAY)} AND (state IN ('PR', 'GU') "
                                   "OR loan_purpose = 'green_energy')")
    assert unseen and result.rows_rejected == 0 and result.rows_scored == 600
    details = last_run(cfg.results.path)["details"]
    counted = {r["column"]: r["unexpected_count"] for r in details["validation"]["rules"] if r["type"] == IN_SET}
    assert counted == {"state": len(keys_where(sample_db, f"{day_filter(SCORE_DAY)} AND state IN ('PR', 'GU')")),
                       "loan_purpose": len(keys_where(sample_db, f"{day_filter(SCORE_DAY)} "
                                                                 "AND loan_purpose = 'green_energy'"))}
    assert any("in_set on 'state'" in w for w in details["validation"]["warnings"])

    def forbid(exp: dict) -> None:
        if exp["type"] == IN_SET:
            exp["severity"] = "critical"

    edit_suite(Path(details["suite"]), forbid)
    result = pipeline.run_day(cfg, SCORE_DAY)
    q = quarantine(cfg.results.path, result.run_id)
    assert set(q["source_key"]) == unseen and set(q["rule"]) == {IN_SET}
    assert set(q["value"]) <= {"PR", "GU", "green_energy"}
    assert not unseen & set(published(cfg.results.path, SCORE_DAY)["source_key"])
    _conserved(cfg, result)


def test_duplicate_keys_across_chunks_and_workers_are_all_quarantined(tmp_path, sample_db, store) -> None:
    # Five rows of the day appear again at the end of the table: far from their first copy, in other chunks.
    db = dirty_source(tmp_path, sample_db, "INSERT INTO loan_applications SELECT * REPLACE (age + 1 AS age) "
                                           f"FROM loan_applications WHERE {day_filter(CLEAN_DAY)} AND {KEY} % 100 = 17")
    dups = keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 100 = 17")
    assert len(dups) >= 4
    cfg, result = _run(tmp_path, db, store, chunking={"rows_per_chunk": 100}, workers=2)
    q = quarantine(cfg.results.path, result.run_id)
    assert len(q) == 2 * len(dups) and set(q["source_key"]) == dups
    assert set(q["rule"]) == {UNIQUE} and set(q["column_name"]) == {KEY}
    out = published(cfg.results.path, CLEAN_DAY)
    assert out["source_key"].is_unique and not dups & set(out["source_key"])
    assert result.rows_in == 600 + len(dups)
    _conserved(cfg, result)


def test_rows_of_other_days_from_a_custom_select_are_never_scored_into_this_day(tmp_path, sample_db, store) -> None:
    # The SELECT returns every day with timestamps moved by 12 hours: the day gets exactly the rows whose
    # (moved) timestamp falls in it, half of them from the previous calendar day of the table.
    query = "SELECT * REPLACE (applied_at + INTERVAL 12 HOUR AS applied_at) FROM loan_applications"
    cfg, result = _run(tmp_path, sample_db, store, source={"table": None, "query": query})
    expected = keys_where(sample_db, f"applied_at + INTERVAL 12 HOUR >= TIMESTAMP '{CLEAN_DAY}' "
                                     f"AND applied_at + INTERVAL 12 HOUR < TIMESTAMP '{CLEAN_DAY + dt.timedelta(days=1)}'")
    assert set(published(cfg.results.path, CLEAN_DAY)["source_key"]) == expected
    assert result.rows_in == len(expected)


def test_the_gate_quarantines_rows_outside_the_interval_a_source_returns(tmp_path, sample_db, store) -> None:
    # Defence in depth: should a source return rows outside the interval, the gate's interval rule catches them.
    cfg = load_config(write_config(tmp_path, sample_db, store))
    mv = ModelStore(cfg.model.store).resolve("loan_default", "champion")
    interval = DataInterval.for_day(CLEAN_DAY)
    two_days = DataInterval(interval.start - dt.timedelta(days=1), interval.end)
    with open_source(cfg.source) as source:
        quality = prepare_quality(cfg, mv, source, interval)
        table = pa.Table.from_batches(list(source.batches(two_days, 10_000)))
    from scoring.quality.gate import apply_gate

    checked = apply_gate(quality.gate, table)
    assert checked.good.num_rows == 600 and checked.quarantine.num_rows == 600
    assert set(checked.quarantine.column("column_name").to_pylist()) == {"applied_at"}
    assert set(checked.quarantine.column("rule").to_pylist()) == {BETWEEN}
    previous = source_day(sample_db, CLEAN_DAY - dt.timedelta(days=1))[KEY].astype(str)
    assert set(checked.quarantine.column("source_key").to_pylist()) == set(previous)


def test_strings_in_a_numeric_column_are_cast_and_unparseable_values_quarantined(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, "ALTER TABLE loan_applications ALTER COLUMN credit_score SET DATA TYPE VARCHAR",
                      f"UPDATE loan_applications SET credit_score = 'n/a?' WHERE {KEY} % 61 = 7",
                      f"UPDATE loan_applications SET credit_score = ' ' || credit_score || ' ' WHERE {KEY} % 61 = 8",
                      f"UPDATE loan_applications SET credit_score = '' WHERE {KEY} % 61 = 9")
    with pytest.raises(SchemaError, match="'credit_score' has type string, the model expects float"):
        _run(tmp_path, db, store)  # default policy: block
    cfg, result = _run(tmp_path, db, store, validation={"schema_drift": "warn"})
    q = quarantine(cfg.results.path, result.run_id)
    assert set(q["source_key"]) == keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 61 = 7")
    assert set(zip(q["column_name"], q["rule"], q["value"], strict=True)) == {
        ("credit_score", "expect_column_values_to_be_in_type_list", "n/a?")}
    # Values that parse (padded text) score exactly like the original numbers; blank text is a missing value.
    model = ModelStore(store).load(ModelStore(store).get("loan_default", 1))
    src = source_day(sample_db, CLEAN_DAY)
    src = src[src[KEY] % 61 != 7]
    expected = dict(zip(src[KEY].astype(str), model.predict_proba(src.assign(
        credit_score=src["credit_score"].where(src[KEY] % 61 != 9)))[:, 1], strict=True))
    got = published(cfg.results.path, CLEAN_DAY).set_index("source_key")["score"]
    assert len(got) == len(expected)
    assert max(abs(got[k] - v) for k, v in expected.items()) < 1e-9
    details = last_run(cfg.results.path)["details"]
    assert details["schema"]["cast"] == {"credit_score": "float64"} and details["schema"]["warnings"]
    _conserved(cfg, result)


def test_quarantined_row_json_is_the_source_row(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET age = 7777 WHERE {KEY} % 200 = 11")
    cfg, result = _run(tmp_path, db, store)
    q = quarantine(cfg.results.path, result.run_id)
    src = source_day(db, CLEAN_DAY).set_index(KEY)
    for r in q.itertuples():
        row = json.loads(r.row_json)
        assert row["age"] == 7777 and row["state"] == src.loc[int(r.source_key), "state"]
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM quarantine WHERE json_valid(row_json)").fetchall()[0][0] == len(q)
