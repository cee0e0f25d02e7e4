"""CBPE (scoring/models/cbpe.py) against realized metrics on generated labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from scoring.models.cbpe import (
    calibrated,
    estimate_binary,
    estimated_roc_auc,
    expected_calibration_error,
    fit_calibrator,
)
from scoring.models.contract import Contract
from scoring.models.performance_ref import performance_reference, sample_chunks


def test_with_the_labels_as_probabilities_the_estimate_is_the_realized_roc_auc() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(5000), 2)  # many ties
    truth = (rng.random(5000) < scores).astype(float)
    assert abs(estimated_roc_auc(scores, truth) - roc_auc_score(truth, scores)) <= 1e-12


def test_calibrated_scores_estimate_the_realized_metrics() -> None:
    rng = np.random.default_rng(1)
    scores = rng.beta(2, 3, 200_000)
    truth = (rng.random(scores.size) < scores).astype(int)
    est = estimate_binary(scores, 0.5, None)
    assert abs(est["roc_auc"] - roc_auc_score(truth, scores)) < 0.005
    assert abs(est["accuracy"] - np.mean((scores >= 0.5) == truth)) < 0.005
    assert abs(est["positive_rate"] - truth.mean()) < 0.005
    assert expected_calibration_error(scores, truth) < 0.01


def test_miscalibrated_scores_are_calibrated_on_the_reference() -> None:
    rng = np.random.default_rng(2)
    p = rng.beta(2, 3, 100_000)
    truth = (rng.random(p.size) < p).astype(int)
    scores = p ** 3  # same ranking, far from calibrated
    assert expected_calibration_error(scores, truth) > 0.05
    ref = performance_reference(Contract("binary", (), (0, 1), 1), np.c_[1 - scores, scores],
                                pd.Series(truth), sample_chunks(p.size, 5000), "test")
    cal = ref["calibration"]
    assert cal["calibrated_on_reference"]
    realized = np.mean((scores >= 0.5) == truth)
    raw = estimate_binary(scores, 0.5, None)["accuracy"]
    fixed = estimate_binary(scores, 0.5, cal["calibrator"])["accuracy"]
    assert abs(fixed - realized) < 0.01 < abs(raw - realized)
    assert expected_calibration_error(calibrated(scores, fit_calibrator(scores, truth)), truth) < 0.01
    band = ref["bands"]["roc_auc"]
    assert band["chunks"] == 20 and band["lower"] < roc_auc_score(truth, scores) < band["upper"]
