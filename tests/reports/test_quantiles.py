"""Exact streaming quantiles (scoring/reports/quantiles.py) against NumPy's own, bit for bit."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from scoring.reports.quantiles import order_keys, streaming_quantiles

QS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1.0)


def _split(values: np.ndarray, parts: int):
    pieces = np.array_split(values, parts)
    return lambda: iter(pieces)


CASES = {
    "uniform scores": np.random.default_rng(1).random(50_001),
    "normal, negatives": np.random.default_rng(2).normal(-3.0, 40.0, 20_000),
    "heavy ties": np.random.default_rng(3).integers(0, 4, 30_000).astype(float) / 3,
    "all equal": np.full(10_000, 0.731),
    "signed zeros and extremes": np.array([0.0, -0.0, 5e-324, -5e-324, 1e308, -1e308, np.inf, -np.inf, 0.5]),
    "one value": np.array([0.42]),
    # a + (b - a) * t and b - (b - a) * (1 - t) differ in the last bit here (t = 0.5 and 0.75): NumPy uses the
    # second for t >= 0.5.
    "interpolation rounding": np.array([0.9438014269420908, 0.12681710226124776]),
    "interpolation rounding at the median": np.array([6.40422650443282, 1.049001171530397]),
    "with NaN": np.concatenate([np.random.default_rng(4).random(1000), np.full(37, np.nan)]),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("max_values", [1 << 20, 7])  # 7 forces the split of buckets, down to whole keys
def test_equals_numpy_linear_quantiles(name: str, max_values: int) -> None:
    values = CASES[name]
    got = streaming_quantiles(_split(values, 5), QS, max_values=max_values)
    with np.errstate(invalid="ignore"):  # inf - inf between the infinities, in NumPy as here
        expected = np.quantile(values[~np.isnan(values)], QS, method="linear")
    # Exact (NaN where NumPy gives NaN): the same order statistics, NumPy's interpolation formula.
    np.testing.assert_array_equal(np.array(got), expected, strict=True)


def test_order_keys_sort_like_the_floats() -> None:
    values = np.concatenate([np.random.default_rng(5).normal(0, 1e6, 5000), [-np.inf, np.inf, 0.0, -1e-300]])
    keys = order_keys(values)
    assert np.array_equal(np.sort(values), values[np.argsort(keys, kind="stable")])


def test_no_values_and_bad_quantiles() -> None:
    assert streaming_quantiles(lambda: iter([np.array([np.nan]), np.empty(0)]), [0.5]) is None
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        streaming_quantiles(lambda: iter([np.ones(3)]), [1.5])


def test_memory_stays_bounded_by_the_batch_not_the_column() -> None:
    """2M values in 40 batches of 50k: the peak traced allocation stays near one batch's keys and counters
    (a few MiB), far below the 16 MiB the column itself takes."""
    rng = np.random.default_rng(6)
    seeds = list(range(40))

    def batches():
        for s in seeds:
            yield np.random.default_rng(s).random(50_000)

    whole = np.concatenate(list(batches()))
    expected = [float(v) for v in np.quantile(whole, QS)]
    del whole, rng
    tracemalloc.start()
    got = streaming_quantiles(batches, QS)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == expected
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 15 MiB column"
