"""Drift counts per reference bin: ``numeric_counts`` (counted by comparisons with each edge) puts every value
in the bin a binary search over the edges puts it in: values on an edge, point masses, NaN and infinities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.models.reference import FEW_EDGES, numeric_counts, numeric_reference


def _by_search(ref: dict, x: np.ndarray) -> list[int]:
    finite = x[np.isfinite(x)]
    points = np.asarray(ref["points"], dtype=np.float64)
    edges = np.asarray(ref["edges"], dtype=np.float64)
    rest = finite[~np.isin(finite, points)]
    bins = np.bincount(np.searchsorted(edges, rest, side="right"), minlength=len(edges) + 1)
    return [*(int((finite == p).sum()) for p in points), *map(int, bins), int(x.size - finite.size)]


@pytest.mark.parametrize("seed", range(6))
def test_numeric_counts_equal_a_binary_search_over_the_edges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    train = np.round(rng.normal(size=5_000) * 10, seed % 3)
    train[: 1_000 * (seed % 4)] = 0.0  # a point mass in some seeds
    ref = numeric_reference(pd.Series(train))
    assert ref["edges"]
    x = np.round(rng.normal(size=20_000) * 12, seed % 3)
    x[::7], x[::11], x[::13] = np.nan, np.inf, 0.0
    x[::5] = rng.choice(ref["edges"], size=x[::5].size)  # values exactly on an edge
    counts = numeric_counts(ref, x)
    assert counts == _by_search(ref, x)
    assert sum(counts) == x.size


def test_many_edges_are_binned_by_search() -> None:
    edges = np.linspace(-1, 1, FEW_EDGES + 8).tolist()
    ref = {"points": [], "edges": edges}
    x = np.random.default_rng(1).normal(size=10_000)
    assert numeric_counts(ref, x) == _by_search(ref, x)
