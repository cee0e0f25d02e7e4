"""The quarantine's row JSON, built a column at a time by Arrow, is the text ``json.dumps`` writes row by row."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import duckdb
import numpy as np
import pyarrow as pa

from scoring.quality.quarantine import QUARANTINE_VALUE_CHARS, _row_json, _row_json_by_row, quarantine_rows

TEXTS = ["plain", 'quo"te', "back\\slash", "nul\x00x", "tab\tnew\nline", "é unicode", "\U0001f600", "",
         "x" * (QUARANTINE_VALUE_CHARS + 5), "ctl\x1f", "del\x7f", "\\x00 spelled"]


def _mixed(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-30, 30, n)
    floats[::17], floats[::23], floats[::29] = np.nan, np.inf, -np.inf
    floats[::31] = np.round(floats[::31])
    start = dt.datetime(2026, 6, 2)
    return pa.table({
        "key": pa.array([f"k-{i}" for i in range(n)]),
        "i": pa.array([None if i % 11 == 0 else i * 7919 - 10**6 for i in range(n)], pa.int64()),
        "u8": pa.array([i % 256 for i in range(n)], pa.uint8()),
        "f": pa.array(floats, pa.float64()),
        "f32": pa.array(floats.astype(np.float32)),
        "b": pa.array([None if i % 5 == 0 else bool(i % 2) for i in range(n)]),
        "text": pa.array([None if i % 13 == 0 else TEXTS[i % len(TEXTS)] for i in range(n)]),
        "ascii": pa.array([None if i % 7 == 0 else f'id "{i}" \\ {i % 3}' for i in range(n)]),
        "ascii_del": pa.array([f"d{i}\x7f" if i % 9 == 0 else f"d{i}" for i in range(n)]),  # ASCII, yet escaped
        "printable": pa.array([f"<{i}> & '{i}'/~" for i in range(n)]),
        "large": pa.array([f"l{i}" for i in range(n)], pa.large_string()),
        "cat": pa.array([TEXTS[i % 3] for i in range(n)]).dictionary_encode(),
        "ts": pa.array([start + dt.timedelta(seconds=i * 1.5) for i in range(n)], pa.timestamp("us")),
        "ts_s": pa.array([None if i % 4 == 0 else i * 86_399 for i in range(n)], pa.timestamp("s")),
        "ts_ms": pa.array([i * 1001 for i in range(n)], pa.timestamp("ms")),
        "ts_ns": pa.array([i * 1_000_000_001 for i in range(n)], pa.timestamp("ns")),
        "tz": pa.array([start.replace(tzinfo=dt.UTC) + dt.timedelta(seconds=i) for i in range(n)],
                       pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2026, 1, 1) + dt.timedelta(days=i % 300) for i in range(n)]),
        "edge_days": pa.array([[dt.date(1, 1, 1), dt.date(9999, 12, 31), None][i % 3] for i in range(n)]),
        "edge_ts": pa.array([[dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None][i % 3]
                             for i in range(n)], pa.timestamp("us")),
        "dec": pa.array([decimal.Decimal("1.25") * i for i in range(n)], pa.decimal128(12, 2)),
        "items": pa.array([[i, None] for i in range(n)]),
        "nothing": pa.nulls(n),
        "é col": pa.array(range(n)),
    })


def test_row_json_is_json_dumps_of_each_row_for_every_column_type() -> None:
    table = _mixed(3_000, seed=1)
    rows = np.sort(np.random.default_rng(2).choice(table.num_rows, 1_500, replace=False))
    expected = _row_json_by_row(table.take(pa.array(rows))).to_pylist()
    assert _row_json(table, rows).to_pylist() == expected
    # chunked columns (a table concatenated from batches) give the same text
    chunked = pa.concat_tables([table.slice(0, 1_000), table.slice(1_000)])
    assert _row_json(chunked, rows).to_pylist() == expected
    # and it is JSON: NaN and infinities as text, a NUL spelled \x00, a long text cut
    parsed = [json.loads(text) for text in expected]
    assert {row["f"] for row in parsed} >= {"nan", "inf", "-inf"}
    assert any(row["text"] == "nul\\x00x" for row in parsed)
    assert all(row["text"] is None or len(row["text"]) < 2 * QUARANTINE_VALUE_CHARS for row in parsed)


def test_row_json_of_a_real_source_day(tmp_path) -> None:
    """The quarantine records of rows read from DuckDB (its own types: VARCHAR, DOUBLE, TIMESTAMP, DATE, ...)."""
    with duckdb.connect(str(tmp_path / "src.duckdb")) as con:
        table = con.sql("SELECT i AS id, 'key-' || i AS key, i * 0.1 AS x, CASE WHEN i % 3 = 0 THEN NULL ELSE "
                        "'level ' || (i % 7) END AS level, TIMESTAMP '2026-06-02 00:00:00' + to_milliseconds(i * 1500) "
                        "AS ts, DATE '2026-06-02' + CAST(i AS INTEGER) AS d, i % 2 = 0 AS flag, "
                        "CAST(i AS DECIMAL(10, 3)) / 7 AS amount FROM range(5000) t(i)").to_arrow_table()
    rows = np.arange(0, table.num_rows, 3)
    records = quarantine_rows(table, rows, "x", "expect_column_values_to_be_between", "key")
    assert records.column("row_json").to_pylist() == _row_json_by_row(table.take(pa.array(rows))).to_pylist()
    assert json.loads(records.column("row_json")[1].as_py())["ts"] == "2026-06-02 00:00:04.500000"
