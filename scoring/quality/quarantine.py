"""Row-level gate: rows breaking a rule are set aside with the column, rule and value, never dropped."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.storage.sources.pg_numeric import NOT_A_NUMBER, SPECIAL_PREFIX, base_column

QUARANTINE_SCHEMA = pa.schema([
    ("source_key", pa.string()),
    ("column_name", pa.string()),
    ("rule", pa.string()),
    ("value", pa.string()),
    ("row_json", pa.string()),
    ("reason", pa.string()),
])


# A quarantined value (and each value of its row_json) is kept up to this many characters: a 10 MB category
# would otherwise be copied into every quarantine row. A cut value ends with a visible marker saying how much
# was cut (``bounded``); the full row stays in the source.
QUARANTINE_VALUE_CHARS = 1000


def bounded(text: str, limit: int = QUARANTINE_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters followed by ``… (N more characters)`` when longer."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def _bounded_array(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    long = pc.greater(pc.utf8_length(text), QUARANTINE_VALUE_CHARS)
    if not pc.any(long).as_py():
        return text
    return pa.array([None if v is None else bounded(v) for v in text.to_pylist()], pa.string())


def _finite(value: object) -> object:
    # NaN and +/-inf are not JSON: keep them readable as text instead of writing invalid JSON; a NUL character
    # is spelled \x00 (PostgreSQL json/jsonb cannot hold \u0000); long text is cut (``bounded``).
    if isinstance(value, str):
        return bounded(value.replace("\x00", "\\x00"))
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _row_json(table: pa.Table, rows: np.ndarray) -> list[str]:
    markers = [n for n in table.column_names if n.startswith(SPECIAL_PREFIX)]
    records = table.drop_columns(markers).take(pa.array(rows, pa.int64())).to_pylist()
    return [json.dumps({k: _finite(v) for k, v in r.items()}, default=str, allow_nan=False) for r in records]


def _no_nul(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text with each NUL character spelled ``\\x00`` (PostgreSQL text cannot hold a NUL)."""
    return pc.replace_substring(text, "\x00", "\\x00")


def quarantine_rows(table: pa.Table, rows: np.ndarray, column: str, rule: str, key_column: str,
                    reason: str | None = None) -> pa.Table:
    """Quarantine records for ``rows`` (positions in ``table``) failing ``rule`` on ``column``; ``reason`` is a
    one-line explanation (e.g. the model's error message) kept with each record."""
    if rows.size == 0:
        return QUARANTINE_SCHEMA.empty_table()
    shown = base_column(column)  # a marker column's rule names the source column it marks
    if shown != column and reason is None:
        reason = (f"the source's value of {shown!r} cannot be represented in the column's type (numeric(p, s) "
                  "read as a decimal has no NaN): quarantined, never scored")
    taken = table.take(pa.array(rows, pa.int64()))
    values = taken.column(column) if column in table.column_names else pa.nulls(rows.size, pa.string())
    if shown != column:
        values = pa.array([NOT_A_NUMBER] * rows.size, pa.string())  # the one value a marker stands for
    return pa.table({
        "source_key": _no_nul(pc.cast(taken.column(key_column), pa.string())),  # a key is never cut
        "column_name": pa.array([shown] * rows.size, pa.string()),
        "rule": pa.array([rule] * rows.size, pa.string()),
        "value": _bounded_array(_no_nul(pc.cast(values, pa.string()))) if not pa.types.is_null(values.type)
        else pa.nulls(rows.size, pa.string()),
        "row_json": pa.array(_row_json(table, rows), pa.string()),
        "reason": pa.array([reason] * rows.size, pa.string()),
    }, schema=QUARANTINE_SCHEMA)


def split_null_keys(table: pa.Table, key_column: str) -> tuple[pa.Table, pa.Table]:
    """Set aside rows without a key: they cannot be published or matched back to the source."""
    null = pc.is_null(table.column(key_column)).to_numpy(zero_copy_only=False)
    if not null.any():
        return table, QUARANTINE_SCHEMA.empty_table()
    bad = np.flatnonzero(null)
    q = quarantine_rows(table, bad, key_column, "expect_column_values_to_not_be_null", key_column)
    return table.filter(pa.array(~null)), q
