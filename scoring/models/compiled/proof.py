"""The proof that a compiled predictor scores exactly as the model's own predict, row by row.

The rows it tries (``probe_rows``):

- the model's inputs as given: the registration sample (and, when given, the whole training frame and a
  held-out sample), with every category level seen there put into a copy of the first rows;
- the trees' own inputs (after the Pipeline's preprocessing): for every split, rows whose split feature is
  the threshold itself and the float64 numbers one ulp either side (``np.nextafter``), and NaN in every
  feature (the missing-value direction).

Equality is bitwise on the float64 outputs (``predict_proba`` or ``predict``): two numbers are equal when
their 64 bits are. The first differing row is returned so a refusal can say where.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

BASE_ROWS = 3  # rows of the sample each threshold probe is written into


@dataclass(frozen=True)
class Difference:
    """The first row where two engines differ: which probe set, its position, and both outputs."""

    probe: str
    row: int
    native: list[float]
    compiled: list[float]

    def describe(self) -> str:
        return f"{self.probe} row {self.row}: native {self.native} vs compiled {self.compiled}"


def first_difference(probe: str, native: np.ndarray, compiled: np.ndarray,
                     tolerance: float = 0.0) -> Difference | None:
    """The first row whose float64 outputs differ in any bit, or None when all are identical.

    With ``tolerance`` > 0 (LightGBM through lleaves): the first row with an output further than
    ``tolerance`` from the native one, a NaN on one side only, or another class (``argmax`` of the row's
    probabilities).

    Raises:
        ValueError: the shapes differ (reported as a difference on row 0 instead when lengths agree).
    """
    a = np.ascontiguousarray(native, dtype=np.float64)
    b = np.ascontiguousarray(compiled, dtype=np.float64)
    if a.shape != b.shape:
        return Difference(probe, 0, [float(a.size)], [float(b.size)])
    if a.size == 0:
        return None
    same = a.view(np.uint64) == b.view(np.uint64)
    if tolerance > 0:
        with np.errstate(invalid="ignore"):
            same = same | (np.abs(a - b) <= tolerance) | (np.isnan(a) & np.isnan(b))
    rows = same.reshape(a.shape[0], -1).all(axis=1)
    if tolerance > 0 and a.ndim == 2 and a.shape[1] > 1:
        rows &= np.argmax(a, axis=1) == np.argmax(b, axis=1)
    if rows.all():
        return None
    row = int(np.flatnonzero(~rows)[0])
    return Difference(probe, row, np.atleast_1d(a[row]).tolist(), np.atleast_1d(b[row]).tolist())


def category_rows(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Copies of the first row of ``frame``, one per (categorical column, level seen in ``frame``)."""
    if frame.empty or not categorical:
        return frame.iloc[:0]
    pieces = []
    for column in categorical:
        levels = frame[column].dropna().unique()
        block = frame.iloc[[0] * len(levels)].copy()
        block[column] = levels if not isinstance(frame[column].dtype, pd.CategoricalDtype) else \
            pd.Categorical(levels, categories=frame[column].cat.categories)
        pieces.append(block)
    return pd.concat(pieces, ignore_index=True)


def threshold_rows(x: np.ndarray, estimator: Any, splits: set[tuple[int, float]] | None = None) -> np.ndarray:
    """Rows in the trees' input space on every split threshold, one ulp either side, and NaN per feature.

    Args:
        x: the trees' inputs of a few sample rows (n x features, float64); the first ``BASE_ROWS`` are used.
        estimator: the fitted HGB estimator (its ``_predictors``), when ``splits`` is not given.
        splits: (feature index, threshold) of every split (another family's).

    Returns:
        float64 array (m x features).
    """
    base = np.ascontiguousarray(x[:BASE_ROWS], dtype=np.float64)
    if splits is None:
        from scoring.models.compiled.hgb import HGBCompiler

        splits = HGBCompiler().splits(estimator)
    rows = []
    for feature, t in sorted(splits):
        for value in (np.nextafter(t, -np.inf), t, np.nextafter(t, np.inf)):
            block = base.copy()
            block[:, feature] = value
            rows.append(block)
    for feature in range(base.shape[1]):
        block = base.copy()
        block[:, feature] = np.nan
        rows.append(block)
    return np.concatenate(rows) if rows else base
