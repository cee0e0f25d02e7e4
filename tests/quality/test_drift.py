"""Drift monitoring: PSI per feature and for the score, accumulated over chunks, in the drift table and CLI."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.errors import ValidationFailed
from scoring.models.reference import actual_shares, expected_shares, psi
from scoring.models.store import ModelStore
from scoring.quality.drift import SCORE, status_of
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import published, source_day
from tests.quality.helpers import CLEAN_DAY, KEY, dirty_source, rows

runner = CliRunner()


def _drift(results, day: dt.date):
    return rows(results, "SELECT * FROM drift WHERE day = $1 ORDER BY feature", [day]).set_index("feature")


def test_psi_accumulated_over_chunks_equals_psi_of_the_whole_day(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET age = 50000 WHERE {KEY} % 37 = 1")
    cfg = load_config(write_config(tmp_path, db, store, chunking={"rows_per_chunk": 53}))
    result = pipeline.run_day(cfg, SCORE_DAY)
    drift = _drift(cfg.results.path, SCORE_DAY)
    mv = ModelStore(store).get("loan_default", 1)
    ref = mv.meta["reference"]
    assert set(drift.index) == {f["name"] for f in mv.features} | {SCORE}
    assert set(drift["run_id"]) == {result.run_id} and set(drift["model_version"]) == {1}
    # Reference: the whole day's scored rows at once (quarantined rows are not part of what the model saw).
    src = source_day(db, SCORE_DAY)
    scored = src[src[KEY] % 37 != 1]
    assert len(scored) == result.rows_scored
    for name in ("age", "credit_score", "state", "loan_purpose", "home_ownership"):
        want = psi(expected_shares(ref["features"][name]), actual_shares(ref["features"][name], scored[name]))
        assert drift.loc[name, "psi"] == pytest.approx(want, rel=1e-9, abs=1e-12), name
    out = published(cfg.results.path, SCORE_DAY)
    want = psi(expected_shares(ref["score"]), actual_shares(ref["score"], out["score"].to_numpy()))
    assert drift.loc[SCORE, "psi"] == pytest.approx(want, rel=1e-9)
    for name, r in drift.iterrows():
        assert r["status"] == status_of(r["psi"], r["warn_at"], r["alert_at"]), name
        assert r["warn_at"] >= cfg.validation.psi_warn and r["alert_at"] >= cfg.validation.psi_alert, name


def test_a_shifted_feature_alerts_and_thresholds_are_configurable(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, "UPDATE loan_applications SET credit_score = credit_score - 120")
    cfg = load_config(write_config(tmp_path, db, store))
    pipeline.run_day(cfg, CLEAN_DAY)
    drift = _drift(cfg.results.path, CLEAN_DAY)
    assert drift.loc["credit_score", "status"] == "alert" and drift.loc["credit_score", "psi"] > 0.25
    assert drift.loc["employment_type", "status"] == "ok"
    loose = load_config(write_config(tmp_path, db, store, validation={"psi_warn": 50.0, "psi_alert": 100.0}))
    pipeline.run_day(loose, CLEAN_DAY)
    again = _drift(loose.results.path, CLEAN_DAY)
    assert set(again["status"]) == {"ok"} and len(again) == len(drift)  # a re-run replaces the day's rows
    assert np.allclose(again["psi"], drift["psi"])


def test_a_failed_run_publishes_no_drift_rows(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, "UPDATE loan_applications SET loan_amount = -1e9")
    cfg = load_config(write_config(tmp_path, db, store))
    with pytest.raises(ValidationFailed):
        pipeline.run_day(cfg, CLEAN_DAY)
    assert len(rows(cfg.results.path, "SELECT * FROM drift")) == 0


def test_drift_cli_shows_the_table(tmp_path, sample_db, store) -> None:
    cfg_path = write_config(tmp_path, sample_db, store)
    cfg = load_config(cfg_path)
    for day in (CLEAN_DAY, SCORE_DAY):
        pipeline.run_day(cfg, day)
    res = runner.invoke(app, ["drift", "--start", str(CLEAN_DAY), "--end", str(SCORE_DAY), "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    assert "credit_score" in res.output and SCORE in res.output and str(SCORE_DAY) in res.output
    res = runner.invoke(app, ["drift", "--start", str(CLEAN_DAY), "--end", str(SCORE_DAY), "--config", str(cfg_path),
                              "--json"])
    table = json.loads(res.output)
    assert len(table) == 2 * 13 and {r["day"] for r in table} == {str(CLEAN_DAY), str(SCORE_DAY)}
    stored = _drift(cfg.results.path, SCORE_DAY)
    state = next(r for r in table if r["day"] == str(SCORE_DAY) and r["feature"] == "state")
    assert state["psi"] == pytest.approx(stored.loc["state", "psi"]) and state["status"] == stored.loc["state", "status"]
    res = runner.invoke(app, ["drift", "--start", str(SCORE_DAY), "--end", str(SCORE_DAY), "--config", str(cfg_path),
                              "--feature", "state", "--json"])
    assert [r["feature"] for r in json.loads(res.output)] == ["state"]
    res = runner.invoke(app, ["drift", "--start", "2026-01-01", "--end", "2026-01-31", "--config", str(cfg_path)])
    assert res.exit_code == 0 and "no drift rows" in res.output
    res = runner.invoke(app, ["drift", "--start", str(SCORE_DAY), "--end", str(CLEAN_DAY), "--config", str(cfg_path)])
    assert res.exit_code == 1 and "comes before start date" in res.output and "Traceback" not in res.output
