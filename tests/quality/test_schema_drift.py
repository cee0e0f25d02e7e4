"""Schema-drift policy: new columns are ignored, missing or unsafely retyped ones stop the run before scoring."""

from __future__ import annotations

import pytest

from scoring.config import load_config
from scoring.errors import SchemaError
from scoring.run import pipeline
from tests.conftest import write_config
from tests.helpers import ledger, published, source_day
from tests.quality.helpers import CLEAN_DAY, dirty_source, last_run


def _query(tmp_path, sample_db, store, query: str, **validation):
    overrides = {"source": {"table": None, "query": query}}
    if validation:
        overrides["validation"] = validation
    return load_config(write_config(tmp_path, sample_db, store, **overrides))


def _stopped_before_scoring(cfg) -> None:
    run = ledger(cfg.results.path).iloc[-1]
    assert run["status"] == "failed" and run["rows_in"] == 0 and run["rows_scored"] == 0
    assert len(published(cfg.results.path)) == 0


def test_a_missing_column_stops_the_run_naming_it_and_its_type(tmp_path, sample_db, store) -> None:
    cfg = _query(tmp_path, sample_db, store, "SELECT * EXCLUDE (credit_score, state) FROM loan_applications")
    for policy in ("block", "warn"):
        cfg.validation.schema_drift = policy
        with pytest.raises(SchemaError, match=r"required columns 'credit_score' \(type float\), 'state' \(type "
                                              r"string\) are missing from the source"):
            pipeline.run_day(cfg, CLEAN_DAY)
        _stopped_before_scoring(cfg)


def test_an_extra_column_is_logged_and_ignored(tmp_path, sample_db, store, caplog) -> None:
    cfg = _query(tmp_path, sample_db, store, "SELECT *, 'x' AS campaign, 42 AS batch_no FROM loan_applications")
    with caplog.at_level("INFO", logger="scoring"):
        result = pipeline.run_day(cfg, CLEAN_DAY)
    assert result.rows_scored == 600 and result.rows_rejected == 0
    assert "campaign" in caplog.text and "batch_no" in caplog.text
    details = last_run(cfg.results.path)["details"]
    assert set(details["schema"]["ignored_columns"]) == {"defaulted", "campaign", "batch_no"}


def test_a_retyped_column_stops_the_run_under_block_and_is_cast_under_warn(tmp_path, sample_db, store) -> None:
    # Integer where float was trained: a safe widening, scored under either policy.
    cfg = _query(tmp_path, sample_db, store, "SELECT * REPLACE (CAST(open_accounts AS INTEGER) AS open_accounts) "
                                             "FROM loan_applications")
    assert pipeline.run_day(cfg, CLEAN_DAY).rows_scored == 600
    # A number where a string was trained: block stops, warn casts the column to text.
    query = "SELECT * REPLACE (CAST(hash(state) % 7 AS BIGINT) AS state) FROM loan_applications"
    cfg = _query(tmp_path, sample_db, store, query)
    with pytest.raises(SchemaError, match="column 'state' has type integer, the model expects string "
                                          r"\(validation.schema_drift is block"):
        pipeline.run_day(cfg, CLEAN_DAY)
    cfg = _query(tmp_path, sample_db, store, query, schema_drift="warn")
    result = pipeline.run_day(cfg, CLEAN_DAY)
    assert result.rows_scored == 600
    assert last_run(cfg.results.path)["details"]["schema"]["cast"] == {"state": "string"}


def test_a_type_that_cannot_be_cast_stops_the_run_under_either_policy(tmp_path, sample_db, store) -> None:
    query = "SELECT * REPLACE (applied_at AS credit_score) FROM loan_applications"
    for policy in ("block", "warn"):
        cfg = _query(tmp_path, sample_db, store, query, schema_drift=policy)
        with pytest.raises(SchemaError, match="column 'credit_score' has type timestamp, the model expects float, "
                                              "and timestamp cannot be cast to float safely"):
            pipeline.run_day(cfg, CLEAN_DAY)
        _stopped_before_scoring(cfg)


def test_a_source_with_no_matching_column(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, "CREATE TABLE events AS SELECT applied_at AS ts, 'click' AS kind, "
                                           "1 AS n FROM loan_applications")
    cfg = load_config(write_config(tmp_path, db, store, source={"table": "events", "timestamp_column": "ts"}))
    with pytest.raises(SchemaError, match=r"the source has none of the model's columns \(key 'application_id' and "
                                          r"12 features such as 'age', 'annual_income', 'loan_amount'\); it has "
                                          "'ts', 'kind', 'n'"):
        pipeline.run_day(cfg, CLEAN_DAY)
    _stopped_before_scoring(cfg)


def test_a_key_only_source_names_every_missing_feature(tmp_path, sample_db, store) -> None:
    cfg = _query(tmp_path, sample_db, store, "SELECT application_id, applied_at FROM loan_applications")
    with pytest.raises(SchemaError) as info:
        pipeline.run_day(cfg, CLEAN_DAY)
    features = source_day(sample_db, CLEAN_DAY).columns.drop(["application_id", "applied_at", "defaulted"])
    assert all(f"'{name}'" in str(info.value) for name in features)
