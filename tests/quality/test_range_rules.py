"""The default generated range rules: the training 1st..99th percentiles widened by ``range_margin`` spans,
with the configured domain bounds (``training.numeric``) winning, so the sample's injected sentinels (age 999,
credit score 9999, negative incomes and loan amounts) are quarantined with their column, value and rule while
every other row of the day is scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from scoring.config import load_config
from scoring.quality.suite import suite_path
from scoring.run import pipeline
from tests.conftest import write_config
from tests.helpers import published, source_day
from tests.quality.helpers import CLEAN_DAY, KEY, quarantine


def test_percentile_ranges_with_domain_bounds_quarantine_the_sentinels(tmp_path: Path, sample_db: Path,
                                                                        store: Path) -> None:
    cfg = load_config(write_config(tmp_path, sample_db, store, validation={"range_rule": "quantile"}))
    result = pipeline.run_day(cfg, CLEAN_DAY)

    suite = json.loads(suite_path(cfg.validation.suites_dir, "loan_default", 1).read_text())
    assert suite["meta"]["scoring"]["range_rule"] == "quantile"
    between = {e["kwargs"]["column"]: e for e in suite["expectations"]
               if e["type"] == "expect_column_values_to_be_between"}
    domain = cfg.training.numeric
    for column, bounds in domain.items():  # a configured bound replaces the generated one
        for side in ("min", "max"):
            if bounds.get(side) is not None:
                assert between[column]["kwargs"][f"{side}_value"] == bounds[side], (column, side)
    assert "configured domain" in between["age"]["meta"]["why"]
    assert "percentiles" in between["annual_income"]["meta"]["why"]
    assert between["annual_income"]["kwargs"]["max_value"] < 1e7  # not min/max-based: 3 spans of p01..p99

    day = source_day(sample_db, CLEAN_DAY)
    outside = pd.Series(False, index=day.index)
    for column, exp in between.items():
        values = pd.to_numeric(day[column], errors="coerce")
        outside |= values.notna() & ((values < exp["kwargs"]["min_value"]) | (values > exp["kwargs"]["max_value"]))
    expected = set(day.loc[outside, KEY].astype(str))
    sentinels = (day["age"] == 999) | (day["credit_score"] == 9999) | (day["annual_income"] < 0) \
        | (day["loan_amount"] < 0)
    assert sentinels.any() and set(day.loc[sentinels.fillna(False), KEY].astype(str)) <= expected

    q = quarantine(cfg.results.path, result.run_id)
    assert set(q["source_key"]) == expected
    assert set(q["rule"]) == {"expect_column_values_to_be_between"}
    age = q[q["column_name"] == "age"]
    assert len(age) and set(age["value"].astype(float)) == {999.0}
    assert result.rows_in == len(day) == result.rows_scored + result.rows_rejected
    assert result.rows_rejected == len(expected)
    pred = published(cfg.results.path, CLEAN_DAY)
    assert set(pred["source_key"]) == set(day[KEY].astype(str)) - expected
    assert np.isfinite(pred["score"]).all()
