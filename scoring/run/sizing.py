"""Chunk sizing from a memory budget."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from scoring.dates import DataInterval
    from scoring.storage.sources.base import Source

STRING_BYTES = 48  # bytes held per short string value (Arrow value and offset, or a pandas str object)
OFFSET_BYTES = 4  # Arrow's int32 offset per string or binary value
# Bytes held per input byte while a chunk is scored: Arrow batch, pandas copy, cleaned copy.
COPIES = 4
# The smallest chunk a budget may ask for. Rows of ordinary width give thousands of rows a chunk at any sensible
# budget; it is rows carrying long texts (100 KB notes passed through) that reach the floor, and there a
# higher floor would overrun the budget (1,000 such rows are 100 MB).
MIN_ROWS = 100
MAX_ROWS = 2_000_000
# A planned chunk (one DAG task's key range) is read as a stream of about this many batches, each scored and
# staged by the chunk loop while the next one is read.
READS_PER_CHUNK = 4
# No read batch is cut smaller than DuckDB's row group (122,880 rows), the most a DuckDB source returns in one
# Arrow batch whatever is asked: a smaller batch leaves a short tail batch per row group, and each batch pays the
# chunk loop's per-batch costs (gate, drift counts, staged files). Smoke measurement (one 400,000-row chunk task,
# fresh process, nice 19 on a loaded machine, 3 rounds): batches of 100,000 rows gave 7 parts and 11.5 s CPU,
# of 122,880 rows 4 parts and 9.3 s CPU, the whole range in one table 9.2 s CPU.
READ_FLOOR = 122_880


def row_bytes(schema: pa.Schema, text_bytes: Mapping[str, float] | None = None) -> int:
    """Estimated bytes one row holds, per copy.

    Args:
        schema: the columns read.
        text_bytes: mean bytes of a value of each text or binary column in the day's rows (a source's
            ``text_bytes``); a column that is not there counts ``STRING_BYTES``, and so does any column whose
            values are shorter (a short string costs more as a Python object than in Arrow).
    """
    total = 0
    for field in schema:
        try:
            total += max(field.type.bit_width // 8, 1)
        except ValueError:  # variable width
            mean = (text_bytes or {}).get(field.name)
            total += STRING_BYTES if mean is None else max(STRING_BYTES, int(mean) + 1 + OFFSET_BYTES)
    return total


def chunk_rows(schema: pa.Schema, encoded_width: int, budget_mib: int | None,
               fixed_rows: int | None = None, text_bytes: Mapping[str, float] | None = None) -> int:
    """Rows per chunk so one chunk's working set stays within ``budget_mib``.

    Args:
        schema: Arrow schema of the columns read.
        encoded_width: number of float64 columns the model's preprocessing produces.
        budget_mib: memory budget for one chunk in MiB (None: no budget).
        fixed_rows: an explicit row count; the smaller of the two wins when both are set.
        text_bytes: measured mean bytes of the text columns (``row_bytes``).
    """
    candidates = []
    if fixed_rows:
        candidates.append(fixed_rows)
    if budget_mib:
        per_row = row_bytes(schema, text_bytes) * COPIES + encoded_width * 8 * 2
        candidates.append(budget_mib * 1024 * 1024 // max(per_row, 1))
    rows = min(candidates) if candidates else 250_000
    return int(max(MIN_ROWS if not fixed_rows else 1, min(rows, MAX_ROWS)))


def mean_text_bytes(source: Source, interval: DataInterval) -> dict[str, float]:
    """Mean bytes of each text or binary column ``source`` reads, over ``interval`` (``text_bytes`` above)."""
    return {name: mean for name, (mean, _) in source.text_widths(interval).items()}


def size_chunks(source: Source, interval: DataInterval | None, encoded_width: int, budget_mib: int | None,
                fixed_rows: int | None = None) -> int:
    """The one sizing rule of every run (CLI, DAG plan, backfill, job): ``chunk_rows`` over the columns
    ``source`` reads (``read_schema``), counting the measured mean bytes of its text columns over
    ``interval`` (one aggregate query, cached per interval; a job's input has no interval: short strings
    assumed)."""
    text = mean_text_bytes(source, interval) if interval is not None else None
    return chunk_rows(source.read_schema(), encoded_width, budget_mib, fixed_rows, text)


def read_rows(rows_per_chunk: int) -> int:
    """Rows per read batch of a planned chunk: about ``rows_per_chunk / READS_PER_CHUNK``, not below
    ``READ_FLOOR`` (a chunk of fewer rows is one batch). A DAG task streams its key range in batches of this
    size through the chunk loop, so the next batch is read while one is scored (as ``scoring run`` reads its
    next chunk) and the task holds two batches, not its whole range. A source may return smaller batches
    (DuckDB returns at most one row group, 122,880 rows, per batch, as it does to ``scoring run``)."""
    return max(1, min(rows_per_chunk, max(READ_FLOOR, math.ceil(rows_per_chunk / READS_PER_CHUNK))))
