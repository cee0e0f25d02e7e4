"""Chunk sizing from a memory budget."""

from __future__ import annotations

import pyarrow as pa

STRING_BYTES = 48  # average bytes of a short string value, with offsets
# Bytes held per input byte while a chunk is scored: Arrow batch, pandas copy, cleaned copy.
COPIES = 4
MIN_ROWS = 1_000
MAX_ROWS = 2_000_000


def row_bytes(schema: pa.Schema) -> int:
    """Estimated Arrow bytes of one row."""
    total = 0
    for field in schema:
        try:
            total += max(field.type.bit_width // 8, 1)
        except ValueError:  # variable width
            total += STRING_BYTES
    return total


def chunk_rows(schema: pa.Schema, encoded_width: int, budget_mib: int | None,
               fixed_rows: int | None = None) -> int:
    """Rows per chunk so one chunk's working set stays within ``budget_mib``.

    Args:
        schema: Arrow schema of the columns read.
        encoded_width: number of float64 columns the model's preprocessing produces.
        budget_mib: memory budget for one chunk in MiB (None: no budget).
        fixed_rows: an explicit row count; the smaller of the two wins when both are set.
    """
    candidates = []
    if fixed_rows:
        candidates.append(fixed_rows)
    if budget_mib:
        per_row = row_bytes(schema) * COPIES + encoded_width * 8 * 2
        candidates.append(budget_mib * 1024 * 1024 // max(per_row, 1))
    rows = min(candidates) if candidates else 250_000
    return int(max(MIN_ROWS if not fixed_rows else 1, min(rows, MAX_ROWS)))
