"""How a challenger's scores compare with the champion's on the same rows (shadow scoring summaries).

Pure functions over arrays aligned by source key; the run computes them per day and challenger
(``scoring.run.shadow``) and publishes them in ``shadow_summary``.
"""

from __future__ import annotations

import math

import numpy as np

PSI_BINS = 10
PSI_FLOOR = 1e-6  # a bin share of 0 would make PSI infinite


def _top(scores: np.ndarray, keys: np.ndarray, k: int) -> set[str]:
    """The keys of the ``k`` highest scores (ties broken by key, ascending)."""
    order = np.lexsort((keys, -scores))
    return {str(v) for v in keys[order[:k]]}


def score_psi(reference: np.ndarray, other: np.ndarray, bins: int = PSI_BINS) -> float:
    """PSI of ``other`` against ``reference``: bins cut at the reference's deciles (``np.quantile``,
    repeated edges merged), a value equal to an edge goes to the bin above it, shares floored at 1e-6;
    ``sum((q - p) * ln(q / p))`` with ``p`` the reference shares. 0.0 for empty input."""
    if reference.size == 0 or other.size == 0:
        return 0.0
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1) / reference.size
    q = np.bincount(np.searchsorted(edges, other, side="right"), minlength=edges.size + 1) / other.size
    p, q = np.maximum(p, PSI_FLOOR), np.maximum(q, PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def compare_scores(keys: np.ndarray, champion: np.ndarray, challenger: np.ndarray,
                   champion_labels: np.ndarray | None = None,
                   challenger_labels: np.ndarray | None = None) -> dict[str, float | int | None]:
    """Compare two models' scores of the same rows.

    Args:
        keys: source keys, shape (n,), the same row order in the other arrays.
        champion, challenger: scores, shape (n,).
        champion_labels, challenger_labels: binary labels 0/1, shape (n,), or None (other tasks).

    Returns:
        ``rows``; ``rank_correlation`` (Spearman, average ranks for ties; None under 2 rows or a constant
        score); ``top_decile_overlap`` (share of the champion's top ceil(n/10) rows also in the challenger's,
        ties by key); ``mean_diff`` and ``positive_rate_diff`` (challenger minus champion; the latter None
        without labels); ``psi`` (``score_psi(champion, challenger)``).
    """
    keys = np.asarray(keys, dtype=str)
    n = int(keys.size)
    out: dict[str, float | int | None] = {"rows": n, "rank_correlation": None, "top_decile_overlap": None,
                                          "mean_diff": None, "positive_rate_diff": None, "psi": 0.0}
    if n == 0:
        return out
    from scipy.stats import rankdata

    a, b = rankdata(champion), rankdata(challenger)
    if n > 1 and a.std() > 0 and b.std() > 0:
        out["rank_correlation"] = float(np.corrcoef(a, b)[0, 1])
    k = max(1, math.ceil(n / 10))
    out["top_decile_overlap"] = len(_top(champion, keys, k) & _top(challenger, keys, k)) / k
    out["mean_diff"] = float(challenger.mean() - champion.mean())
    if champion_labels is not None and challenger_labels is not None:
        out["positive_rate_diff"] = float(challenger_labels.mean() - champion_labels.mean())
    out["psi"] = score_psi(champion, challenger)
    return out
