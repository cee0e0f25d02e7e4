"""Expectation suites: generated at registration, loadable by GX, compiled rules agree with GX's own engine."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.models.store import ModelStore
from scoring.quality.batch_rules import evaluate
from scoring.quality.compile import compile_suite
from scoring.quality.gate import apply_gate, merge_stats
from scoring.quality.run_checks import prepare_quality
from scoring.quality.suite import SuiteError, read_suite
from scoring.run import pipeline
from scoring.storage.sources import open_source
from tests.conftest import SCORE_DAY, START, TRAIN_END, write_config
from tests.helpers import source_day
from tests.quality.helpers import CLEAN_DAY, KEY, day_filter, dirty_source, last_run

runner = CliRunner()


def _by(suite: dict, type_: str) -> dict[str, dict]:
    return {e["kwargs"].get("column"): e for e in suite["expectations"] if e["type"] == type_}


def test_train_writes_a_suite_from_the_training_profile_that_gx_loads(trained_store: Path, sample_db: Path) -> None:
    import great_expectations as gx

    path = trained_store.parent / "schemas" / "loan_default" / "v1.json"
    suite = json.loads(path.read_text())
    gx.get_context(mode="ephemeral")
    loaded = gx.ExpectationSuite(**suite)
    assert len(loaded.expectations) == len(suite["expectations"])
    assert loaded.to_json_dict() == suite  # GX reads and writes the file unchanged
    train = pd.concat([source_day(sample_db, START + dt.timedelta(days=d))
                       for d in range((TRAIN_END - START).days + 1)], ignore_index=True)
    not_null = set(_by(suite, "expect_column_values_to_not_be_null"))
    assert not_null == {KEY} | {c for c in train.columns.drop([KEY, "applied_at", "defaulted"])
                                if train[c].notna().all()}
    share = {e["kwargs"]["column"]: e for e in suite["expectations"]
             if e["type"] == "expect_column_proportion_of_non_null_values_to_be_between"
             and not e["meta"]["why"].startswith("null flood")}
    floods = {e["kwargs"]["column"] for e in suite["expectations"] if e["meta"].get("why", "").startswith("null flood")}
    assert floods and all(e["severity"] == "critical" for e in suite["expectations"]
                          if e["meta"].get("why", "").startswith("null flood"))
    assert set(share) == {c for c in train.columns.drop([KEY, "applied_at", "defaulted"]) if train[c].isna().any()}
    between = _by(suite, "expect_column_values_to_be_between")
    span = train["credit_score"].max() - train["credit_score"].min()
    assert between["credit_score"]["kwargs"] == {"column": "credit_score", "min_value": 0.0,
                                                 "max_value": pytest.approx(train["credit_score"].max() + 3 * span)}
    levels = _by(suite, "expect_column_values_to_be_in_set")
    assert levels["state"]["kwargs"]["value_set"] == sorted(train["state"].unique())
    assert levels["state"]["severity"] == "warning"
    assert _by(suite, "expect_column_values_to_be_unique").keys() == {KEY}


def test_compiled_rules_count_exactly_what_gx_counts_on_the_same_rows(tmp_path, sample_db, store) -> None:
    """GX's pandas engine and the vectorized gate, on the same dirty day and the same suite file."""
    import great_expectations as gx

    db = dirty_source(tmp_path, sample_db,
                      f"UPDATE loan_applications SET loan_amount = NULL WHERE {KEY} % 40 = 1",
                      f"UPDATE loan_applications SET annual_income = 'inf'::DOUBLE WHERE {KEY} % 40 = 2",
                      f"UPDATE loan_applications SET annual_income = 'nan'::DOUBLE WHERE {KEY} % 40 = 3",
                      f"UPDATE loan_applications SET age = -4 WHERE {KEY} % 40 = 4",
                      f"UPDATE loan_applications SET debt_to_income = NULL WHERE {KEY} % 3 = 0",
                      "INSERT INTO loan_applications SELECT * FROM loan_applications "
                      f"WHERE {day_filter(SCORE_DAY)} AND {KEY} % 40 = 5")
    cfg = load_config(write_config(tmp_path, db, store))
    mv = ModelStore(store).get("loan_default", 1)
    interval = DataInterval.for_day(SCORE_DAY)
    with open_source(cfg.source) as source:
        quality = prepare_quality(cfg, mv, source, interval)
        table = pa.Table.from_batches(list(source.batches(interval, 10_000)))
    parts = [apply_gate(quality.gate, table.slice(i, 77)) for i in range(0, table.num_rows, 77)]
    stats = merge_stats([p.stats for p in parts])
    ours = evaluate(quality.rules, stats, table.num_rows, sum(p.quarantine.num_rows for p in parts), 1.0,
                    table.column_names)
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas("p").add_dataframe_asset("day")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": table.to_pandas()}))
    theirs = batch.validate(gx.ExpectationSuite(**quality.suite), result_format="COMPLETE")
    # Keyed with min_value too: a column may carry two null-share rules (the warning and the null-flood one).
    gx_results = {(r.expectation_config.type, r.expectation_config.kwargs.get("column"),
                   r.expectation_config.kwargs.get("min_value")): r for r in theirs.results}
    compared = 0
    for outcome in ours.outcomes:
        if outcome.rule.source != "suite":
            continue
        r = gx_results[(outcome.rule.type, outcome.rule.column, outcome.rule.kwargs.get("min_value"))]
        assert r.exception_info.get("raised_exception") is not True, r.exception_info
        assert outcome.success == r.success, (outcome.rule, r.result)
        if "unexpected_count" in r.result:
            assert outcome.result["unexpected_count"] == r.result["unexpected_count"], outcome.rule
        if not outcome.rule.row_level and outcome.rule.type != "expect_table_columns_to_match_set":
            assert outcome.result["observed_value"] == pytest.approx(r.result["observed_value"]), outcome.rule
        compared += 1
    assert compared == len(quality.suite["expectations"]) > 30
    found = {o.rule.type: o for o in ours.outcomes if o.result.get("unexpected_count")}
    assert {"expect_column_values_to_be_unique", "expect_column_values_to_be_between",
            "expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set"} <= set(found)


def test_missing_suite_is_generated_or_refused(tmp_path, sample_db, store) -> None:
    cfg = load_config(write_config(tmp_path, sample_db, store, validation={"require_suite": True}))
    with pytest.raises(SuiteError, match=r"no expectation suite for model loan_default v1: .*v1.json' is missing"):
        pipeline.run_day(cfg, CLEAN_DAY)
    res = runner.invoke(app, ["models", "suite", "loan_default", "--config", str(cfg.path)])
    assert res.exit_code == 0 and "wrote the expectation suite" in res.output, res.output
    assert "severity" in res.output and "warning" in res.output  # each rule's severity and why, as a table
    suite = json.loads(next((cfg.validation.suites_dir / "loan_default").glob("v1.json")).read_text())
    nulls = [e for e in suite["expectations"] if e["type"] == "expect_column_values_to_not_be_null"
             and e["kwargs"]["column"] != "application_id"]
    assert nulls and all(e["severity"] == "warning" and "handles NaN natively" in e["meta"]["why"] for e in nulls)
    assert pipeline.run_day(cfg, CLEAN_DAY).rows_scored == 600
    assert last_run(cfg.results.path)["details"]["suite_generated"] is False
    res = runner.invoke(app, ["models", "suite", "loan_default", "--config", str(cfg.path)])
    assert res.exit_code == 0 and "kept the existing" in res.output


def test_suite_mistakes_are_one_line_errors_naming_the_expectation(tmp_path, cfg_path, cfg) -> None:
    pipeline.run_day(cfg, CLEAN_DAY)  # writes the generated suite
    path = Path(last_run(cfg.results.path)["details"]["suite"])
    good = read_suite(path)
    for change, message in [
        ({"type": "expect_column_kl_divergence_to_be_less_than", "kwargs": {"column": "age"}},
         "expectation 1: 'expect_column_kl_divergence_to_be_less_than' is not supported"),
        ({"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_val": 1}},
         r"expectation 1 \(expect_column_values_to_be_between\): unsupported argument\(s\) min_val"),
        ({"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "max_value": "old"}},
         "max_value must be a number or null, got 'old'"),
        ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nickname"}},
         "expect_column_values_to_not_be_null is on column 'nickname', which the source does not have"),
    ]:
        path.write_text(json.dumps({**good, "expectations": [change, *good["expectations"]]}))
        res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(CLEAN_DAY)])
        assert res.exit_code == 1 and re.search(message, res.output), res.output
        assert "Traceback" not in res.output
    path.write_text("{not json")
    with pytest.raises(SuiteError, match="is not valid JSON"):
        compile_suite(read_suite(path), path)


def test_models_register_writes_the_suite(tmp_path, sample_db, store) -> None:
    frame = source_day(sample_db, START)
    data = tmp_path / "train.parquet"
    frame.to_parquet(data)
    artifact = ModelStore(store).get("loan_default", 1).artifact
    cfg_path = write_config(tmp_path, sample_db, store)
    res = runner.invoke(app, ["models", "register", "--name", "loan_default", "--artifact", str(artifact),
                              "--training-data", str(data), "--label", "defaulted", "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    suite = tmp_path / "schemas" / "loan_default" / "v2.json"
    assert suite.is_file() and str(suite) in res.output.replace("\n", "")
    assert compile_suite(read_suite(suite), suite).rules
