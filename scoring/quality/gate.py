"""The row-level gate on one Arrow chunk: per-row casts, every row rule as a vectorized mask, quarantine.

Each rule is a numpy boolean mask over the chunk (pyarrow.compute + numpy, no Python loop over rows).
A row failing any quarantining rule is set aside with ONE quarantine record, naming the first rule it
fails in gate order (interval, types, then the suite's order); every rule's own count covers all the rows
it fails, like GX's ``unexpected_count``. Chunk counts are plain JSON, so they travel in the staged
manifest from worker processes and merge by addition.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.quality.compile import TYPE_RULES, Rule
from scoring.quality.quarantine import QUARANTINE_SCHEMA, quarantine_rows
from scoring.storage.sources.pg_numeric import special_column

PARTIAL = 20  # sample of unexpected values kept per rule (GX's partial_unexpected_count)
MISSING_TEXT = {"", "nan", "null", "none", "na", "n/a"}


@dataclass(frozen=True)
class Gate:
    """Everything a chunk needs to be validated; picklable and free of GX.

    Attributes:
        key_column: the source key.
        rules: row-level rules in gate order (the run's own rules first).
        casts: column -> target ("float64" or "string") for columns cast row by row.
        cast_rules: column -> id of the type rule charged with values that do not cast.
        duplicates: column of a uniqueness rule -> the values occurring more than once in the interval.
        keep: ``validation.duplicate_keys: keep_latest``: the key column -> ``(k, t)`` table of the one row
            kept per duplicated key (its latest timestamp); the other rows of the key are quarantined.
        timestamp_column: the column ``keep``'s ``t`` is compared with.
        null_columns: columns whose null counts batch-level rules need.
        drift: feature -> training reference entry, for the drift counts of the scored rows.
        text_levels: column cast from numbers to text -> the levels the model knows (its signature's and
            training reference's), to refuse a cast text that spells a known level differently.
    """

    key_column: str
    rules: tuple[Rule, ...]
    casts: dict[str, str] = field(default_factory=dict)
    cast_rules: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, pa.Array] = field(default_factory=dict)
    null_columns: tuple[str, ...] = ()
    drift: dict[str, Any] = field(default_factory=dict)
    keep: dict[str, pa.Table] = field(default_factory=dict)
    timestamp_column: str | None = None
    text_levels: dict[str, frozenset[str]] = field(default_factory=dict)


SUPERSEDED = "superseded by a later row of the same key (validation.duplicate_keys: keep_latest)"


def _kept_rows(gate: Gate, table: pa.Table, column: str, bad: np.ndarray) -> np.ndarray:
    """Of the duplicated rows ``bad``, those ``gate.keep`` keeps (their key's unique latest timestamp)."""
    keep = gate.keep.get(column)
    rows = np.flatnonzero(bad)
    out = np.zeros(len(bad), dtype=bool)
    if keep is None or keep.num_rows == 0 or rows.size == 0 or gate.timestamp_column not in table.column_names:
        return out
    taken = pa.array(rows, pa.int64())
    mine = pa.table({"k": pc.cast(_plain(table.column(column)).take(taken), pa.string()),
                     "t": pc.cast(table.column(gate.timestamp_column).take(taken), pa.string()), "i": taken})
    wanted = pa.table({"k": pc.cast(_plain(keep.column("k")), pa.string()),
                       "t": pc.cast(keep.column("t"), pa.string())})
    hits = mine.join(wanted, ["k", "t"], join_type="inner").column("i").to_numpy()
    out[hits] = True
    return out


def _superseded(gate: Gate, table: pa.Table, column: str, bad: np.ndarray) -> np.ndarray:
    """Of the quarantined duplicate rows ``bad``, those whose key has a kept row (superseded, not tied)."""
    rows = np.flatnonzero(bad)
    out = np.zeros(len(bad), dtype=bool)
    if rows.size == 0:
        return out
    keys = pc.cast(_plain(table.column(column)).take(pa.array(rows, pa.int64())), pa.string())
    kept = pc.cast(_plain(gate.keep[column].column("k")), pa.string())
    out[rows] = pc.is_in(keys, value_set=kept.combine_chunks() if isinstance(kept, pa.ChunkedArray) else kept
                         ).to_numpy(zero_copy_only=False)
    return out


@dataclass
class GateResult:
    """One validated chunk: rows to score (cast), their quarantine records, and JSON counts."""

    good: pa.Table
    quarantine: pa.Table
    stats: dict[str, Any]


NUL_PATTERN = "\\x00"  # RE2 (Arrow) and Python re: the NUL character


def nul_rule(column: str) -> Rule:
    """The run's own rule on a key or passthrough text column: no NUL character. PostgreSQL text cannot hold
    one, and a key or copied value must be published exactly or not at all: such rows are quarantined (their
    quarantine ``value`` and ``source_key`` spell the NUL as ``\\x00``)."""
    return Rule(f"nul:{column}", "expect_column_values_to_not_match_regex",
                {"column": column, "regex": NUL_PATTERN}, "critical", "run")


def special_rule(column: str) -> Rule:
    """The run's own rule on a column whose type cannot hold every source value (PostgreSQL ``numeric(p, s)``
    holding ``NaN``, ``Source.special_columns``): a row whose marker column (``pg_numeric.special_column``)
    is true is quarantined naming the column and the value (``NaN``), never scored as a NULL."""
    return Rule(f"representable:{column}", "expect_column_values_to_not_be_in_set",
                {"column": special_column(column), "value_set": [True]}, "critical", "run")


DOUBLE_MAX = 1.7976931348623157e308


def double_range_rule(column: str) -> Rule:
    """The run's own rule on a column parsed to float64 from a wider type (PostgreSQL's unconstrained
    numeric): a value beyond the double range (read as +/-inf) is quarantined, never scored."""
    return Rule(f"double_range:{column}", "expect_column_values_to_be_between",
                {"column": column, "min_value": -DOUBLE_MAX, "max_value": DOUBLE_MAX}, "critical", "run")


def interval_rule(column: str, start: dt.datetime, end: dt.datetime) -> Rule:
    """The run's own rule: the timestamp lies in ``[start, end)`` (a custom SELECT must not leak other days)."""
    return Rule("interval", "expect_column_values_to_be_between",
                {"column": column, "min_value": start.isoformat(), "max_value": end.isoformat(),
                 "strict_max": True}, "critical", "run")


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-encoded values (DuckDB ENUM, Parquet dictionaries) as their values; string_view as string."""
    col = col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
    return col.cast(pa.string()) if pa.types.is_string_view(col.type) else col


def _nulls(col: pa.ChunkedArray) -> np.ndarray:
    nan = pa.types.is_floating(col.type)
    return pc.is_null(col, nan_is_null=nan).to_numpy(zero_copy_only=False)


def _floats(col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_decimal(col.type):  # through the exact text: Arrow's decimal -> double is not correctly rounded
        col = col.cast(pa.string()).cast(pa.float64())
    values = col.to_numpy(zero_copy_only=False) if col.num_chunks else np.empty(0)
    return np.asarray(values, dtype=np.float64)


EXACT_DIGITS = 15  # a decimal text of at most 15 significant digits round-trips through a double (DBL_DIG)
_NON_FINITE_TEXT = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _lossy(stripped: pd.Series, parsed: pd.Series, ok: np.ndarray) -> np.ndarray:
    """Rows of ``ok`` whose double is not the number their text says: the text has more significant digits
    than a double holds (``9007199254740993``) or is beyond its range (``1e400`` -> inf). The check: the
    shortest text of the double (``repr``) equals the text as a decimal number; only texts of more than
    ``EXACT_DIGITS`` digits, or parsed to +/-inf, are checked one by one."""
    from decimal import Decimal, InvalidOperation

    lossy = np.zeros(len(parsed), dtype=bool)
    values = parsed.to_numpy()
    digits = stripped.str.replace(r"[eE][+-]?\d+$", "", regex=True).str.count(r"\d")
    zeros = stripped.str.extract(r"^[+-]?([0.]*)", expand=False).str.count("0")
    wide = ((digits - zeros) > EXACT_DIGITS).to_numpy(dtype=bool, na_value=False)
    inf = np.isinf(values) & ~stripped.str.lower().isin(_NON_FINITE_TEXT).to_numpy(dtype=bool)
    for i in np.flatnonzero(ok & (wide | inf)):
        try:
            lossy[i] = not np.isfinite(values[i]) or Decimal(repr(float(values[i]))) != Decimal(stripped.iloc[i])
        except InvalidOperation:
            lossy[i] = True
    return lossy


def parse_numbers(col: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Strings to float64: blank and nan/null-like text become null; returns (values, mask of rows whose text
    does not parse or whose double is not the number the text says, ``_lossy``): those rows are quarantined,
    never scored on a changed value."""
    text = pd.Series(col.to_numpy(zero_copy_only=False), dtype=object)
    stripped = text.where(text.isna(), text.astype(str).str.strip())
    parsed = pd.to_numeric(stripped, errors="coerce").astype(np.float64)
    blank = stripped.isna() | stripped.str.lower().isin(MISSING_TEXT)
    bad = (parsed.isna() & ~blank).to_numpy(dtype=bool).copy()
    bad |= _lossy(stripped.fillna(""), parsed, ~bad & ~blank.to_numpy(dtype=bool))
    values = np.where(bad, np.nan, parsed.to_numpy())
    return pa.array(values, pa.float64(), from_pandas=True), bad


EXACT_INT = 2 ** 53  # integers a double holds exactly


def _number_of(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def number_text(col: pa.ChunkedArray, levels: frozenset[str] | None = None) -> tuple[pa.Array, np.ndarray]:
    """Numbers to the text the model reads (``validation.schema_drift: warn``), checked row by row.

    Integers and integral doubles print as integers (``42``, never ``42.0`` or ``1e+20``), decimals with their
    scale, other doubles as their shortest round-tripping text. A row is lossy (returned in the mask, to be
    quarantined, never scored on a changed value) when its cast text does not give back the source value
    exactly: an infinite double, a double whose text needs an exponent (``1e-07``), an integral double beyond
    2**53; or, with ``levels`` known, when a level other than the text spells the same number (``000042``,
    ``1E5``, ``42.0`` for 42 or 100000): the source lost the spelling, so the model would see a level it never
    saw or one of two it cannot tell apart. NaN is read as missing. Text columns pass through unchanged.
    """
    n = len(col)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_null(col.type):
        return pc.cast(col, pa.string()).combine_chunks() if n else pa.array([], pa.string()), np.zeros(n, bool)
    bad = np.zeros(n, dtype=bool)
    if pa.types.is_floating(col.type):
        x = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        valid = ~pc.is_null(col).to_numpy(zero_copy_only=False) & ~np.isnan(x)
        with np.errstate(invalid="ignore"):
            integral = valid & np.isfinite(x) & (np.floor(x) == x) & (np.abs(x) < EXACT_INT)
        shortest = pc.cast(col, pa.string()).to_pylist()
        texts: list[str | None] = []
        for i in range(n):
            if not valid[i]:
                texts.append(None)
            elif integral[i]:
                texts.append(str(int(x[i])))
            else:
                text = shortest[i]
                bad[i] = not np.isfinite(x[i]) or "e" in text.lower() or float(text) != x[i] or (
                    np.floor(x[i]) == x[i])  # an integral double beyond 2**53: its digits are not the source's
                texts.append(text)
        values = pa.array(texts, pa.string())
    else:
        values = pc.cast(col, pa.string()).combine_chunks()
    if levels:
        by_number: dict[float, set[str]] = {}
        for level in levels:
            if (number := _number_of(level)) is not None:
                by_number.setdefault(number, set()).add(level)
        for i in np.flatnonzero(~bad):
            text = values[i].as_py()
            if text is not None and (by_number.get(_number_of(text)) or {text}) - {text}:
                bad[i] = True  # another level spells this number: the source's spelling is lost
    return values, bad


def _in_set(col: pa.ChunkedArray, values: list[Any]) -> np.ndarray:
    try:
        value_set = pa.array(values).cast(col.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        col, value_set = col.cast(pa.string()), pa.array([str(v) for v in values], pa.string())
    return pc.is_in(col, value_set=value_set).to_numpy(zero_copy_only=False)


def _bound(value: Any, col_type: pa.DataType) -> Any:
    if isinstance(value, str) and pa.types.is_timestamp(col_type):
        stamp = dt.datetime.fromisoformat(value)
        if col_type.tz is None and stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
        return pa.scalar(stamp, col_type)
    if isinstance(value, str) and pa.types.is_date(col_type):
        return pa.scalar(dt.datetime.fromisoformat(value).date(), col_type)
    return value


def _between(col: pa.ChunkedArray, kw: dict[str, Any], missing: np.ndarray) -> np.ndarray:
    low, high = kw.get("min_value"), kw.get("max_value")
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        bad = np.zeros(len(col), dtype=bool)
        for value, op, strict_op, strict in ((low, pc.less, pc.less_equal, kw.get("strict_min")),
                                             (high, pc.greater, pc.greater_equal, kw.get("strict_max"))):
            if value is not None:
                out = (strict_op if strict else op)(col, _bound(value, col.type))
                bad |= pc.fill_null(out, False).to_numpy(zero_copy_only=False)
        return bad & ~missing
    x = _floats(col)
    with np.errstate(invalid="ignore"):
        bad = np.zeros(x.shape[0], dtype=bool)
        if low is not None:
            bad |= (x <= low) if kw.get("strict_min") else (x < low)
        if high is not None:
            bad |= (x >= high) if kw.get("strict_max") else (x > high)
    return bad & ~missing


def _mask(rule: Rule, col: pa.ChunkedArray, missing: np.ndarray, gate: Gate,
          cast_bad: dict[str, np.ndarray]) -> np.ndarray:
    kw, n = rule.kwargs, len(col)
    if rule.type == "expect_column_values_to_not_be_null":
        return missing
    if rule.type == "expect_column_values_to_be_between":
        return _between(col, kw, missing)
    if rule.type == "expect_column_values_to_be_in_set":
        return ~_in_set(col, kw["value_set"]) & ~missing
    if rule.type == "expect_column_values_to_not_be_in_set":
        return _in_set(col, kw["value_set"]) & ~missing
    if rule.type == "expect_column_values_to_be_unique":
        dups = gate.duplicates.get(rule.column)
        if dups is None or len(dups) == 0:
            return np.zeros(n, dtype=bool)
        return pc.is_in(col, value_set=dups.cast(col.type)).to_numpy(zero_copy_only=False) & ~missing
    if rule.type == "expect_column_values_to_not_match_regex":
        text = col if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) else pc.cast(col, pa.string())
        hit = pc.match_substring_regex(text, pattern=kw["regex"])
        return pc.fill_null(hit, False).to_numpy(zero_copy_only=False) & ~missing
    if rule.type in TYPE_RULES:
        if gate.cast_rules.get(rule.column) == rule.id:
            return cast_bad.get(rule.column, np.zeros(n, dtype=bool))
        return np.zeros(n, dtype=bool)
    raise ValueError(f"not a row-level rule: {rule.type}")


def _text(values: pa.Array | pa.ChunkedArray) -> list[str | None]:
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    try:
        out = pc.cast(values, pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = [None if v is None else str(v) for v in values.to_pylist()]
    # samples go into the ledger's JSON details: a NUL is spelled \x00 (PostgreSQL json cannot hold it)
    return [v.replace("\x00", "\\x00") if isinstance(v, str) else v for v in out]


def apply_gate(gate: Gate, table: pa.Table) -> GateResult:
    """Validate one chunk: cast, evaluate every row rule, split good rows from quarantined ones.

    Args:
        gate: the compiled rules of the run.
        table: the chunk as read from the source (every source column).

    Returns:
        The rows to score (with cast columns), one quarantine record per rejected row (value and row JSON
        from the source row as read), and counts: rows, per-rule unexpected/missing counts and a sample of
        unexpected values, and null counts of ``gate.null_columns`` (after casting, over every row).
    """
    started = time.perf_counter()
    n = table.num_rows
    cast_bad: dict[str, np.ndarray] = {}
    cast = table
    for column, target in gate.casts.items():
        idx = cast.schema.get_field_index(column)
        if target == "float64":
            values, cast_bad[column] = parse_numbers(_plain(cast.column(column)))
        else:
            values, cast_bad[column] = number_text(_plain(cast.column(column)), gate.text_levels.get(column))
        cast = cast.set_column(idx, pa.field(column, values.type), values)
    missing: dict[str, np.ndarray] = {}
    columns: dict[str, pa.ChunkedArray] = {}

    def col(name: str) -> tuple[pa.ChunkedArray, np.ndarray]:
        if name not in columns:
            columns[name] = _plain(cast.column(name))
            missing[name] = _nulls(columns[name])
        return columns[name], missing[name]

    stats: dict[str, Any] = {"rows": n, "unexpected": {}, "missing": {}, "partial": {}, "nulls": {}}
    assigned = np.zeros(n, dtype=bool)
    pieces: list[pa.Table] = []
    for rule in gate.rules:
        values, miss = col(rule.column)
        if rule.type == "expect_column_values_to_be_unique":  # duplicates were found on the source's values
            values = _plain(table.column(rule.column))
        bad = _mask(rule, values, miss, gate, cast_bad)
        superseded = None
        if rule.type == "expect_column_values_to_be_unique" and rule.column in gate.keep:
            kept = _kept_rows(gate, table, rule.column, bad)
            bad &= ~kept
            superseded = _superseded(gate, table, rule.column, bad)
        count = int(bad.sum())
        stats["unexpected"][rule.id] = count
        stats["missing"][rule.id] = int(miss.sum()) if rule.type != "expect_column_values_to_not_be_null" else 0
        if not count:
            continue
        rows = np.flatnonzero(bad)
        stats["partial"][rule.id] = _text(table.column(rule.column).take(pa.array(rows[:PARTIAL])))
        if rule.quarantines:
            new = np.flatnonzero(bad & ~assigned)
            assigned |= bad
            if new.size and superseded is not None and superseded[new].any():
                # rows of a key whose kept row is elsewhere: said so; a tie keeps the plain duplicate record
                for rows_, reason in ((new[superseded[new]], SUPERSEDED), (new[~superseded[new]], None)):
                    if rows_.size:
                        pieces.append(quarantine_rows(table, rows_, rule.column, rule.type, gate.key_column,
                                                      reason))
            elif new.size:
                pieces.append(quarantine_rows(table, new, rule.column, rule.type, gate.key_column))
    for name in gate.null_columns:
        stats["nulls"][name] = int(col(name)[1].sum())
    good = cast.filter(pa.array(~assigned)) if assigned.any() else cast
    quarantine = pa.concat_tables(pieces) if pieces else QUARANTINE_SCHEMA.empty_table()
    stats["gate_s"] = time.perf_counter() - started
    return GateResult(good, quarantine, stats)


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the chunk counts of a run (samples are concatenated, up to ``PARTIAL`` values)."""
    total: dict[str, Any] = {"rows": 0, "unexpected": {}, "missing": {}, "partial": {}, "nulls": {}, "gate_s": 0.0}
    for part in parts:
        total["rows"] += part.get("rows", 0)
        total["gate_s"] += part.get("gate_s", 0.0)
        for key in ("unexpected", "missing", "nulls"):
            for name, count in part.get(key, {}).items():
                total[key][name] = total[key].get(name, 0) + count
        for name, values in part.get("partial", {}).items():
            kept = total["partial"].setdefault(name, [])
            kept.extend(values[:PARTIAL - len(kept)])
    return total
