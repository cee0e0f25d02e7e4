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


def _row_json_by_row(taken: pa.Table) -> pa.Array:
    """The row JSON of each row of ``taken``, one ``json.dumps`` per row (the reference ``_row_json`` matches)."""
    return pa.array([json.dumps({k: _finite(v) for k, v in r.items()}, default=str, allow_nan=False)
                     for r in taken.to_pylist()], pa.string())


_ESCAPED = "[^\\x20-\\x7e]"  # RE2: what json.dumps (ensure_ascii) spells as an escape, besides \\ and "


def _json_strings(text: pa.Array) -> pa.Array | None:
    """JSON string literals of ``text`` as ``json.dumps`` (ensure_ascii) writes them, computed by Arrow, for
    text of printable ASCII only (space to ``~``) within ``QUARANTINE_VALUE_CHARS``; None otherwise."""
    text = _no_nul(text)  # NUL spelled \x00 first, as _finite does
    if pc.any(pc.greater(pc.utf8_length(text), QUARANTINE_VALUE_CHARS)).as_py() \
            or pc.any(pc.match_substring_regex(text, _ESCAPED)).as_py():
        return None
    escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _python_dates(column: pa.Array, kind: pa.DataType) -> bool:
    """Naive timestamps (s, ms, us) or dates within the years 1-9999: the values ``to_pylist`` makes
    ``datetime`` / ``date`` of, whose ``str`` Arrow's cast to text writes the same way."""
    if pa.types.is_date32(kind):
        scale, low_bound, high_bound = 1, -719_162, 2_932_896  # days since the epoch of 0001-01-01, 9999-12-31
    elif pa.types.is_timestamp(kind) and kind.tz is None and kind.unit in _MICROS:
        scale, low_bound, high_bound = _MICROS[kind.unit], -62_135_596_800_000_000, 253_402_300_799_999_999
    else:
        return False
    low, high = pc.min_max(column).values()
    return not low.is_valid or (low_bound <= low.value * scale and high.value * scale <= high_bound)


_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _json_values(column: pa.Array) -> pa.Array:
    """Each value of ``column`` as the text ``json.dumps`` writes for it inside the row's object (``null`` for
    a null): integers and booleans by Arrow, plain ASCII text by ``_json_strings``, doubles by ``repr`` (their
    shortest round-trip text, as ``json`` writes them; NaN and infinities as the strings ``"nan"``,
    ``"inf"``, ``"-inf"``), any other type (and other text) value by value as ``_row_json_by_row`` does."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_string_view(kind) or pa.types.is_large_string(kind):
        column, kind = column.cast(pa.string()), pa.string()
    out: pa.Array | None = None
    if pa.types.is_integer(kind):
        out = pc.cast(column, pa.string())
    elif pa.types.is_boolean(kind):
        out = pc.if_else(column, "true", "false")
    elif pa.types.is_string(kind):
        out = _json_strings(column)
    elif _python_dates(column, kind):  # str() of a datetime / date: microseconds only when not zero
        text = pc.cast(column.cast(pa.timestamp("us")) if pa.types.is_timestamp(kind) else column, pa.string())
        out = pc.binary_join_element_wise('"', pc.replace_substring_regex(text, r"\.000000$", ""), '"', "")
    elif pa.types.is_float64(kind):
        out = pa.array([None if v is None else float.__repr__(v) if math.isfinite(v) else f'"{v}"'
                        for v in column.to_pylist()], pa.string())
    if out is None:
        out = pa.array([json.dumps(_finite(v), default=str, allow_nan=False) for v in column.to_pylist()],
                       pa.string())
    return pc.fill_null(out, "null")


def _row_json(table: pa.Table, rows: np.ndarray) -> pa.Array:
    """The source row of each of ``rows`` (positions in ``table``) as a JSON object, marker columns left out:
    ``{"name": value, ...}`` in column order, exactly the text ``json.dumps(row, default=str, allow_nan=False)``
    writes for the row after ``_finite``, built a column at a time (``_json_values``) and joined by Arrow."""
    markers = [n for n in table.column_names if n.startswith(SPECIAL_PREFIX)]
    taken = table.drop_columns(markers).take(pa.array(rows, pa.int64()))
    names = taken.column_names
    if not names or len(set(names)) != len(names):  # a row dict would merge duplicated names
        return _row_json_by_row(taken)
    pieces: list[pa.Array | str] = []
    for i, (name, column) in enumerate(zip(names, taken.columns, strict=True)):
        pieces += [("{" if i == 0 else ", ") + json.dumps(name) + ": ", _json_values(column.combine_chunks())]
    return pc.binary_join_element_wise(*pieces, "}", "")


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
        "row_json": _row_json(table, rows),
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
