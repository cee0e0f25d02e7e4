"""Re-chunk a stream of record batches into batches of a fixed row count, holding at most one batch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Yield the rows of ``batches`` in order, ``rows`` per batch (the last one may be shorter).

    Only the rows of the batch being assembled are held (plus the incoming batch), so memory stays
    bounded by the chunk size whatever the stream's length. Empty input batches are skipped.
    """
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(rows - count, batch.num_rows - offset)
            held.append(batch.slice(offset, take))
            offset += take
            count += take
            if count == rows:
                yield _combine(held)
                held, count = [], 0
    if count:
        yield _combine(held)


def _combine(parts: list[pa.RecordBatch]) -> pa.RecordBatch:
    return parts[0] if len(parts) == 1 else pa.concat_batches(parts)
