"""Confidence-based performance estimation (CBPE) of a binary classifier, and the reference band of a metric.

CBPE (NannyML, https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html): if the
scores are calibrated, P(y = 1 | score s) = s, so each row contributes s expected true positives (when
predicted positive) or s expected false negatives, and 1 - s expected false or true negatives; a day's
expected confusion matrix gives its expected accuracy and ROC AUC without a label. Scores that are not
calibrated are first mapped through an isotonic calibrator fitted on the labelled reference (NannyML does
the same when its calibration check fails). Implemented here rather than with the ``nannyml`` package: its
estimator holds every row of a chunk in pandas frames and pulls a large dependency tree into the run's
environment, while the formulas are a few vectorized lines over one day's score column.

One deliberate difference from NannyML's ``estimate_roc_auc``: rows are ordered by the model's own score
(the ranking the realized ROC AUC uses), not by the calibrated probability, whose isotonic steps would tie
rows the model tells apart; calibrated probabilities are the expected labels along that order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CALIBRATION_BINS = 10
ECE_TOLERANCE = 0.05  # expected calibration error above which the estimator calibrates on the reference
BAND_SD = 3.0  # NannyML's default threshold for estimated metrics: reference mean +/- 3 standard deviations
WARN_SD = 2.0


def expected_calibration_error(scores: np.ndarray, truth: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean |observed positive rate - mean score| over equal-count score bins, weighted by bin size.

    Args:
        scores: P(positive), n floats in [0, 1].
        truth: 0/1 labels, n.

    Returns:
        The ECE in [0, 1] (0 for an empty input).
    """
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if scores.size == 0:
        return 0.0
    order = np.argsort(scores, kind="stable")
    total = 0.0
    for part in np.array_split(order, min(bins, scores.size)):
        total += part.size * abs(truth[part].mean() - scores[part].mean())
    return float(total / scores.size)


def fit_calibrator(scores: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    """An isotonic map score -> P(positive) fitted on labelled reference rows (scikit-learn's
    ``IsotonicRegression``, out_of_bounds="clip"), kept as its breakpoints so it is JSON and applied by
    ``np.interp`` without unpickling anything."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64))
    return {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}


def calibrated(scores: np.ndarray, calibrator: dict[str, list[float]] | None) -> np.ndarray:
    """``scores`` through the calibrator (identity without one)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not calibrator:
        return scores
    return np.interp(scores, np.asarray(calibrator["x"]), np.asarray(calibrator["y"]))


def estimated_roc_auc(scores: np.ndarray, probability: np.ndarray) -> float | None:
    """Expected ROC AUC: ROC curve from expected TP/FP counts along the descending score order, ties of the
    score taken together (one ROC point per distinct score), trapezoid area. None when the expected
    positives or negatives are 0."""
    scores, probability = np.asarray(scores, dtype=np.float64), np.asarray(probability, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], probability[order]
    tp, fp = np.cumsum(p), np.cumsum(1.0 - p)
    if tp.size == 0 or tp[-1] <= 0 or fp[-1] <= 0:
        return None
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # the last row of each distinct score
    tpr = np.r_[0.0, tp[last] / tp[-1]]
    fpr = np.r_[0.0, fp[last] / fp[-1]]
    return float(np.trapezoid(tpr, fpr))


def estimate_binary(scores: np.ndarray, threshold: float, calibrator: dict[str, list[float]] | None) -> dict[str, Any]:
    """CBPE of one day: estimated ROC AUC, accuracy at ``threshold`` and positive rate (expected share of
    actual positives), and the predicted positive rate (known). Empty for an empty day."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return {}
    p = calibrated(scores, calibrator)
    predicted = scores >= threshold
    out: dict[str, Any] = {"rows": int(scores.size), "accuracy": float(np.mean(np.where(predicted, p, 1.0 - p))),
                           "positive_rate": float(p.mean()), "predicted_positive_rate": float(predicted.mean())}
    auc = estimated_roc_auc(scores, p)
    if auc is not None:
        out["roc_auc"] = auc
    return out


def band(values: list[float], sd: float = BAND_SD) -> dict[str, float] | None:
    """Mean, standard deviation (ddof 1) and mean -/+ ``sd`` x sd of a metric over reference chunks; None
    with fewer than 3 chunks."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size < 3:
        return None
    mean, spread = float(arr.mean()), float(arr.std(ddof=1))
    return {"mean": mean, "sd": spread, "lower": mean - sd * spread, "upper": mean + sd * spread,
            "warn_lower": mean - WARN_SD * spread, "warn_upper": mean + WARN_SD * spread, "chunks": int(arr.size)}
