from __future__ import annotations

import pyarrow as pa

from scoring.run.sizing import MAX_ROWS, MIN_ROWS, chunk_rows, row_bytes

SCHEMA = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("s", pa.string())])


def test_row_bytes_counts_fixed_and_variable_width() -> None:
    assert row_bytes(SCHEMA) == 8 + 8 + 48


def test_budget_scales_rows_linearly_and_fixed_rows_win_when_smaller() -> None:
    small = chunk_rows(SCHEMA, encoded_width=10, budget_mib=64)
    large = chunk_rows(SCHEMA, encoded_width=10, budget_mib=128)
    assert large == 2 * small
    per_row = row_bytes(SCHEMA) * 4 + 10 * 8 * 2
    assert small == 64 * 1024 * 1024 // per_row
    assert chunk_rows(SCHEMA, 10, 64, fixed_rows=500) == 500
    assert chunk_rows(SCHEMA, 10, None, fixed_rows=10_000_000) == MAX_ROWS
    assert chunk_rows(SCHEMA, 10_000, 1) == MIN_ROWS


def test_measured_text_widths_count_when_longer_than_a_short_string() -> None:
    assert row_bytes(SCHEMA, {"s": 2.0}) == row_bytes(SCHEMA)  # short values: a str object's cost stands
    assert row_bytes(SCHEMA, {"s": 1000.0}) == 8 + 8 + 1000 + 1 + 4
    wide = chunk_rows(SCHEMA, encoded_width=10, budget_mib=64, text_bytes={"s": 100_000.0})
    assert wide == 64 * 1024 * 1024 // ((8 + 8 + 100_005) * 4 + 10 * 8 * 2)
    assert chunk_rows(SCHEMA, 10, 1, text_bytes={"s": 1e7}) == MIN_ROWS  # the floor, whatever the width


def test_a_planned_chunk_is_read_in_about_four_batches_not_below_a_row_group() -> None:
    from scoring.run.sizing import READ_FLOOR, read_rows

    assert read_rows(500_000) == 125_000 and read_rows(2_000_000) == 500_000
    assert read_rows(400_000) == READ_FLOOR == 122_880  # not cut below DuckDB's row group
    assert read_rows(100_000) == 100_000 and read_rows(150) == 150 and read_rows(1) == 1  # one batch
