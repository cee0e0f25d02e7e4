"""A version's performance reference, computed at registration from its labelled training rows: the
calibration check of a binary classifier (and the calibrator CBPE uses when it fails), and the band of each
metric over reference chunks (training days, or chunks of a typical day's size drawn from the training rows
when the training file has no timestamp). Days judged later against the band: ``scoring.quality.performance``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from scoring.models.cbpe import (
    ECE_TOLERANCE,
    band,
    estimate_binary,
    expected_calibration_error,
    fit_calibrator,
)
from scoring.models.contract import Contract
from scoring.models.metrics import _match, task_metrics

logger = logging.getLogger(__name__)

MIN_CHUNK_ROWS = 30
BANDED = {"binary": ("roc_auc", "accuracy"), "multiclass": ("accuracy", "macro_f1"), "regression": ("rmse", "mae")}
SEED = 0


def sample_chunks(n: int, chunk_rows: int, seed: int = SEED) -> pd.Series:
    """Chunk number of each of ``n`` rows: rows shuffled (fixed seed) and cut into chunks of ``chunk_rows``;
    the rows of the last, partial chunk get None. Stands in for business days when the training rows carry
    no timestamp (their spread then reflects sampling noise at a day's size, not day-to-day change)."""
    chunk_rows = max(int(chunk_rows), 1)
    order = np.random.default_rng(seed).permutation(n)
    ids = np.empty(n, dtype=object)
    full = (n // chunk_rows) * chunk_rows
    ids[order[:full]] = (np.arange(full) // chunk_rows).tolist()
    ids[order[full:]] = None
    return pd.Series(ids, dtype=object)


def _accuracy_binary(truth: np.ndarray, score: np.ndarray, threshold: float) -> float:
    return float(np.mean((score >= threshold).astype(np.int64) == truth))


def performance_reference(contract: Contract, outputs: np.ndarray, labels: pd.Series | None,
                          chunks: pd.Series | None, basis: str, threshold: float = 0.5) -> dict[str, Any] | None:
    """Calibration and metric bands of one version.

    Args:
        contract: the version's contract.
        outputs: the model's own outputs on the training rows (n x k, or n).
        labels: the training labels (None: no reference; unlabelled rows are left out).
        chunks: the reference chunk of each row (a business day, or ``sample_chunks``), None where a row
            belongs to none; None: bands are not computed.
        basis: how the chunks were made, one line, kept in the metadata.
        threshold: the binary decision threshold accuracy is computed at.

    Returns:
        ``{"basis", "calibration": {"ece", "calibrated_on_reference", "calibrator"}, "bands": {metric: band},
        "estimated_bands": {...}}`` or None without labels.
    """
    if labels is None:
        return None
    keep = labels.notna().to_numpy()
    if not keep.any():
        return None
    y, out = labels[keep].reset_index(drop=True), outputs[keep]
    ref: dict[str, Any] = {"basis": basis, "threshold": threshold, "bands": {}, "estimated_bands": {}}
    truth = score = None
    calibrator = None
    if contract.task == "binary":
        truth = (_match(y, list(contract.classes)) == contract.positive_index).astype(np.int64)
        score = out[:, contract.positive_index]
        ece = expected_calibration_error(score, truth)
        needs = ece > ECE_TOLERANCE
        calibrator = fit_calibrator(score, truth) if needs else None
        ref["calibration"] = {"ece": ece, "tolerance": ECE_TOLERANCE, "calibrated_on_reference": needs,
                              "calibrator": calibrator}
    if chunks is None:
        return ref
    ids = chunks[keep].reset_index(drop=True)
    realized: dict[str, list[float]] = {m: [] for m in BANDED[contract.task]}
    estimated: dict[str, list[float]] = {"roc_auc": [], "accuracy": []}
    for _, index in ids.dropna().groupby(ids.dropna()).groups.items():
        rows = np.asarray(index)
        if rows.size < MIN_CHUNK_ROWS:
            continue
        metrics = task_metrics(contract, out[rows], y.iloc[rows].reset_index(drop=True))
        if contract.task == "binary":
            metrics["accuracy"] = _accuracy_binary(truth[rows], score[rows], threshold)
            guess = estimate_binary(score[rows], threshold, calibrator)
            for m in estimated:
                estimated[m].append(guess.get(m, np.nan))
        for m in realized:
            realized[m].append(metrics.get(m, np.nan))
    ref["bands"] = {m: b for m, v in realized.items() if (b := band(v)) is not None}
    if contract.task == "binary":
        ref["estimated_bands"] = {m: b for m, v in estimated.items() if (b := band(v)) is not None}
    return ref
