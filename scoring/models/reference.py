"""Training reference statistics (bins, category frequencies, score distribution) and PSI against them.

Numeric bins are quantile bins of the training values, except that a value holding at least
``POINT_MASS`` of the training rows (a zero, a sentinel, a cap) gets a bin of its own: quantile edges of a
column that is 0 on 94% of rows collapse to one value and would put every non-negative value in one bin,
blind to a change of the zero share. Categorical levels are compared by ``level_key`` (one spelling for
booleans: ``true``/``false``, as Arrow casts them), for the reference and a run alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

N_BINS = 10
POINT_MASS = 0.05  # share of training rows at one value that earns it a bin of its own
MAX_POINTS = 5
TOP_LEVELS = 50
OTHER = "__other__"
MISSING = "__missing__"
ROBUST_Q = 0.01  # the generated range rules start from the 1st and 99th percentiles (q01, q99)
EPS = 1e-4
FEW_EDGES = 32  # up to this many edges, ``numeric_counts`` counts by comparisons instead of searchsorted


def numeric_reference(values: pd.Series) -> dict[str, Any]:
    """Point-mass bins (values holding >= ``POINT_MASS`` of the rows), quantile bins over the other finite
    values, the share of each bin and of missing values.

    Returns:
        ``{"kind": "numeric", "points": [...], "edges": [...], "shares": [point shares..., bin shares...],
        "missing", "min", "max", "q01", "q99"}`` (``q01``/``q99``: the 1st and 99th percentiles of the finite
        values, numpy's default linear interpolation; what the generated range rules start from); ``numeric_counts`` bins values the same way.
    """
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return {"kind": "numeric", "points": [], "edges": [], "shares": [], "missing": 1.0}
    uniq, counts = np.unique(finite, return_counts=True)
    heavy = np.argsort(-counts, kind="stable")[:MAX_POINTS]
    points = np.sort(uniq[heavy[counts[heavy] >= POINT_MASS * x.size]])
    rest = finite[~np.isin(finite, points)]
    edges = np.unique(np.quantile(rest, np.linspace(0, 1, N_BINS - len(points) + 1)[1:-1])) if rest.size \
        else np.empty(0)
    low, high = np.quantile(finite, [ROBUST_Q, 1 - ROBUST_Q])
    ref = {"kind": "numeric", "points": points.tolist(), "edges": edges.tolist(), "missing": 0.0,
           "min": float(finite.min()), "max": float(finite.max()), "q01": float(low), "q99": float(high)}
    ref["shares"] = (np.asarray(numeric_counts(ref, x)[:-1]) / max(x.size, 1)).tolist()
    ref["missing"] = float(1 - finite.size / max(x.size, 1))
    return ref


def numeric_counts(ref: dict[str, Any], x: np.ndarray) -> list[int]:
    """Counts of ``x`` (float64, NaN = missing) per point bin, per quantile bin, then missing."""
    x = np.asarray(x, dtype=np.float64)
    finite = x[np.isfinite(x)]
    points = np.asarray(ref.get("points") or [], dtype=np.float64)
    edges = np.asarray(ref["edges"], dtype=np.float64)
    point_counts = [int(np.count_nonzero(finite == p)) for p in points]
    rest = finite[~np.isin(finite, points)] if points.size else finite
    if edges.size <= FEW_EDGES and bool(np.all(edges[1:] > edges[:-1])):
        # bin k holds edges[k-1] <= v < edges[k]: counted as differences of #(v < edge), one pass per edge
        # (a binary search per value costs several times more for the ~10 edges of a reference)
        below = [int(np.count_nonzero(rest < edge)) for edge in edges]
        counts = np.diff(np.asarray([0, *below, rest.size], dtype=np.int64))
    else:
        counts = np.bincount(np.searchsorted(edges, rest, side="right"), minlength=len(edges) + 1)
    return [*point_counts, *map(int, counts), int(x.size - finite.size)]


def level_key(value: Any) -> str:
    """One spelling of a level for the reference and a run: booleans as ``true``/``false``, else ``str``."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def categorical_reference(values: pd.Series) -> dict[str, Any]:
    """Share of each of the most frequent levels; the rest pool into one 'other' level."""
    keys = values.astype(object).map(level_key, na_action="ignore")
    counts = keys.where(values.notna(), MISSING).value_counts()
    top = counts.head(TOP_LEVELS)
    shares = (top / max(len(values), 1)).to_dict()
    rest = 1 - sum(shares.values())
    if rest > 0:
        shares[OTHER] = rest
    return {"kind": "categorical", "shares": {str(k): float(v) for k, v in shares.items()},
            "levels": [str(k) for k in counts.index if k != MISSING],
            "missing": float(values.isna().sum() / max(len(values), 1))}


def score_reference(scores: np.ndarray) -> dict[str, Any]:
    """Share of scores in ten equal-width bins over [0, 1]."""
    counts, _ = np.histogram(np.asarray(scores, dtype=np.float64), bins=N_BINS, range=(0.0, 1.0))
    return {"kind": "score", "edges": np.linspace(0, 1, N_BINS + 1).tolist(),
            "shares": (counts / max(len(scores), 1)).tolist()}


def build_reference(frame: pd.DataFrame, features: list[dict[str, str]], scores: np.ndarray,
                    task: str = "binary") -> dict[str, Any]:
    """Reference statistics for every feature of the schema and for the model's score.

    The score of a classifier is binned over [0, 1] (tenths); a regression's prediction gets quantile bins
    like a numeric feature (``numeric_reference``), since its range is the model's own.
    """
    ref: dict[str, Any] = {"features": {}, "rows": len(frame)}
    for feat in features:
        col = frame[feat["name"]]
        ref["features"][feat["name"]] = (
            numeric_reference(col) if feat["type"] in ("integer", "float") else categorical_reference(col)
        )
    ref["score"] = numeric_reference(pd.Series(scores)) if task == "regression" else score_reference(scores)
    return ref


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index between two share vectors of the same bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPS), max(a, EPS)
        total += (a - e) * math.log(a / e)
    return total


def actual_shares(ref: dict[str, Any], values: pd.Series | np.ndarray) -> list[float]:
    """Shares of ``values`` in the bins or levels of one reference entry, in the reference's order."""
    if ref["kind"] == "score":
        counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=N_BINS, range=(0.0, 1.0))
        return (counts / max(len(values), 1)).tolist()
    if ref["kind"] == "numeric":
        x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return (np.asarray(numeric_counts(ref, x)) / max(x.size, 1)).tolist()
    s = pd.Series(values).astype(object)
    counts = s.map(level_key, na_action="ignore").where(s.notna(), MISSING).value_counts()
    n = max(len(s), 1)
    known = [k for k in ref["shares"] if k != OTHER]
    shares = [float(counts.get(k, counts.get(k.lower(), 0))) / n for k in known]
    if OTHER in ref["shares"]:
        shares.append(1 - sum(shares))
    return shares


def expected_shares(ref: dict[str, Any]) -> list[float]:
    """The reference's own shares, ordered as ``actual_shares`` returns them."""
    if ref["kind"] == "numeric":
        return [*ref["shares"], ref["missing"]]
    if ref["kind"] == "score":
        return list(ref["shares"])
    return list(ref["shares"].values())


MIN_WINDOW_ROWS = 30  # a training window with fewer rows is too noisy to calibrate on
MIN_WINDOWS = 3


def business_days(stamps: pd.Series, zone: str = "UTC", naive_zone: str | None = None) -> pd.Series:
    """The business day (a date in ``zone``) of each timestamp; naive stamps are wall time in ``naive_zone``
    (default ``zone``), aware ones are converted."""
    values = pd.to_datetime(stamps)
    if getattr(values.dt, "tz", None) is None:
        values = values.dt.tz_localize(naive_zone or zone, ambiguous="NaT", nonexistent="NaT")
    return values.dt.tz_convert(zone).dt.date


def drift_baseline(frame: pd.DataFrame, days: pd.Series, reference: dict[str, Any], features: list[dict[str, str]],
                   scores: np.ndarray, window_days: int = 1) -> dict[str, Any] | None:
    """PSI of every feature (and the score) on each training window against the whole training reference.

    The method of NannyML's drift thresholds (its ``StandardDeviationThreshold``: mean +/- k standard
    deviations of the metric over reference chunks), with our chunks being business days (or ``window_days``
    consecutive training days pooled, as a run pools them). A feature whose value is constant within a day
    has a large PSI on every training day; judged against its own baseline it no longer alerts every day.

    Args:
        frame: the training rows (every feature column).
        days: the business day of each row (same index as ``frame``).
        reference: ``build_reference``'s output for ``frame``.
        features: the feature schema.
        scores: the published score of each training row.
        window_days: training days pooled per window.

    Returns:
        ``{"window_days", "windows", "features": {name: {"mean", "sd", "max", "n"}}, "score": {...}}``, or
        None when the training data has fewer than ``MIN_WINDOWS`` windows of ``MIN_WINDOW_ROWS`` rows.
    """
    order = sorted(d for d in pd.unique(days) if not pd.isna(d))
    windows = [order[i:i + window_days] for i in range(0, max(len(order) - window_days + 1, 0))]
    day_values = days.to_numpy()
    values: dict[str, list[float]] = {f["name"]: [] for f in features}
    score_values: list[float] = []
    used = 0
    for window in windows:
        mask = np.isin(day_values, np.array(window, dtype=object))
        if mask.sum() < MIN_WINDOW_ROWS:
            continue
        used += 1
        part = frame.loc[mask]
        for feat in features:
            ref = reference["features"][feat["name"]]
            if expected_shares(ref):
                values[feat["name"]].append(psi(expected_shares(ref), actual_shares(ref, part[feat["name"]])))
        score_values.append(psi(expected_shares(reference["score"]),
                                actual_shares(reference["score"], np.asarray(scores)[mask])))
    if used < MIN_WINDOWS:
        return None

    def summary(xs: list[float]) -> dict[str, float]:
        arr = np.asarray(xs, dtype=np.float64)
        return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
                "max": float(arr.max()), "n": int(arr.size)}

    return {"window_days": window_days, "windows": used,
            "features": {n: summary(v) for n, v in values.items() if v}, "score": summary(score_values)}
