"""Exact quantiles of a column too long to hold, in a few streaming passes over its batches.

NumPy's ``np.quantile`` (and SQL's ``percentile_cont``) need every value in memory at once: 8 bytes a row, plus
the copies made on the way (24 bytes a row in practice), which made a 5M-row day's peak RSS grow with the day.
Here the values are read batch by batch, several times, and only counts are kept:

1. every value maps to a 64-bit key with the same order (IEEE 754 bits, sign flipped: the usual radix-sort
   trick, e.g. Knuth, TAOCP vol. 3, 5.2.5);
2. one pass counts the keys per bucket of their top 16 bits (65,536 counters); the bucket holding each wanted
   order statistic follows from the running counts;
3. a bucket still holding more than ``max_values`` values is split by its next 16 bits in another pass (at most
   four levels: a 64-bit key is then one value), else its values are collected and the statistic picked with
   ``np.partition``.

The result is the same number ``np.quantile(values, q, method="linear")`` gives (the same two order
statistics, interpolated with NumPy's own formula), at memory bounded by ``max_values`` plus the counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

LEVEL_BITS = 16
MAX_VALUES = 1 << 20  # values collected at once for a final pick: 8 MiB of float64


def order_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys ordered as the float64 ``values`` (no NaN): negatives bit-inverted, positives sign-set."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _non_nan(batches: Callable[[], Iterable[np.ndarray]]) -> Iterable[np.ndarray]:
    for values in batches():
        values = np.asarray(values, dtype=np.float64)
        yield values[~np.isnan(values)]


def _order_statistics(batches: Callable[[], Iterable[np.ndarray]], ranks: set[int],
                      max_values: int) -> dict[int, float]:
    """The ``ranks``-th smallest values (0-based) of the non-NaN values, in bounded memory."""
    # Each pending rank: (bits of the key already fixed, the fixed prefix, the rank within that prefix).
    pending = {r: (0, 0, r) for r in ranks}
    found: dict[int, float] = {}
    while pending:
        groups: dict[tuple[int, int], list[int]] = {}
        for r, (fixed, prefix, _) in pending.items():
            groups.setdefault((fixed, prefix), []).append(r)
        counts = {g: np.zeros(1 << LEVEL_BITS, dtype=np.int64) for g in groups}
        for values in _non_nan(batches):
            keys = order_keys(values)
            for (fixed, prefix), hist in counts.items():
                inside = keys if fixed == 0 else keys[(keys >> np.uint64(64 - fixed)) == np.uint64(prefix)]
                shift = np.uint64(64 - fixed - LEVEL_BITS)
                mask = np.uint64((1 << LEVEL_BITS) - 1)
                hist += np.bincount(((inside >> shift) & mask).astype(np.int64), minlength=1 << LEVEL_BITS)
        collect: dict[tuple[int, int], list[int]] = {}
        for (fixed, prefix), rs in groups.items():
            cumulative = np.cumsum(counts[(fixed, prefix)])
            for r in rs:
                within = pending[r][2]
                bucket = int(np.searchsorted(cumulative, within, side="right"))
                before = int(cumulative[bucket - 1]) if bucket else 0
                size = int(cumulative[bucket]) - before
                step = (fixed + LEVEL_BITS, (prefix << LEVEL_BITS) | bucket, within - before)
                if size <= max_values or step[0] == 64:
                    collect.setdefault(step[:2], []).append(r)
                pending[r] = step
        for (fixed, prefix), rs in collect.items():
            parts = [v[(order_keys(v) >> np.uint64(64 - fixed)) == np.uint64(prefix)] if fixed < 64
                     else v[order_keys(v) == np.uint64(prefix)] for v in _non_nan(batches)]
            values = np.concatenate(parts)
            for r in rs:
                within = pending.pop(r)[2]
                found[r] = float(np.partition(values, within)[within])
    return found


def streaming_quantiles(batches: Callable[[], Iterable[np.ndarray]], quantiles: Sequence[float],
                        max_values: int = MAX_VALUES) -> list[float] | None:
    """``np.quantile(values, quantiles, method="linear")`` of the non-NaN values the batches yield.

    Args:
        batches: called once per pass (2 passes typically, at most 5); each call yields the same float arrays
            in any order.
        quantiles: in [0, 1].
        max_values: most values held at once for a final pick (memory: 8 bytes each, plus 65,536 counters
            per wanted statistic and one batch).

    Returns:
        One value per quantile, or None when there is no non-NaN value.

    Raises:
        ValueError: a quantile outside [0, 1].
    """
    if any(not 0 <= q <= 1 for q in quantiles):
        raise ValueError(f"quantiles must be in [0, 1], got {list(quantiles)}")
    n = sum(int(v.size) for v in _non_nan(batches))
    if n == 0:
        return None
    positions = [(n - 1) * q for q in quantiles]  # NumPy's "linear" method: virtual index (n - 1) * q
    ranks = set()
    for h in positions:
        low = int(np.floor(h))
        ranks.update({low, min(low + 1, n - 1)})
    stats = _order_statistics(batches, ranks, max_values)
    out = []
    for h in positions:
        low = int(np.floor(h))
        below, above = stats[low], stats[min(low + 1, n - 1)]
        # NumPy's _lerp: a + (b - a) * t, and b - (b - a) * (1 - t) when t >= 0.5 (numpy/lib/_function_base_impl.py).
        t = h - low
        diff = above - below
        out.append(float(above - diff * (1 - t) if t >= 0.5 else below + diff * t))
    return out
