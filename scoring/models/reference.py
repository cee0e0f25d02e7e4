"""Training reference statistics (bins, category frequencies, score distribution) and PSI against them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

N_BINS = 10
TOP_LEVELS = 50
OTHER = "__other__"
MISSING = "__missing__"
EPS = 1e-4


def numeric_reference(values: pd.Series) -> dict[str, Any]:
    """Quantile bin edges over finite values plus the share of each bin and of missing values."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return {"kind": "numeric", "edges": [], "shares": [], "missing": 1.0}
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    return {"kind": "numeric", "edges": edges.tolist(), "shares": _numeric_shares(x, edges).tolist(),
            "missing": float(1 - finite.size / max(x.size, 1)),
            "min": float(finite.min()), "max": float(finite.max())}


def _numeric_shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    finite = x[np.isfinite(x)]
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    return counts / max(x.size, 1)


def categorical_reference(values: pd.Series) -> dict[str, Any]:
    """Share of each of the most frequent levels; the rest pool into one 'other' level."""
    counts = values.astype(object).where(values.notna(), MISSING).value_counts()
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
        shares = _numeric_shares(x, np.asarray(ref["edges"]))
        return [*shares.tolist(), float(np.mean(~np.isfinite(x))) if x.size else 0.0]
    s = pd.Series(values).astype(object)
    counts = s.where(s.notna(), MISSING).astype(str).value_counts()
    n = max(len(s), 1)
    known = [k for k in ref["shares"] if k != OTHER]
    shares = [float(counts.get(k, 0)) / n for k in known]
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
