"""Checks on what is about to be published: no null score, scores within [0, 1], one prediction per key.

Run once over every staged predictions file of the run with DuckDB (one scan), so keys are checked
across chunks, not only within each.
"""

from __future__ import annotations

from pathlib import Path

import duckdb


def check_predictions(files: list[Path], expected_rows: int) -> list[str]:
    """Problems with the staged predictions (empty when they are fine).

    Args:
        files: the run's staged prediction Parquet files.
        expected_rows: rows the manifests say were scored.
    """
    if not files:
        return [] if expected_rows == 0 else [f"output check: {expected_rows} rows scored but nothing staged"]
    with duckdb.connect() as con:
        rows, keys, null_keys, bad = con.sql(
            "SELECT count(*), count(DISTINCT source_key), count(*) FILTER (WHERE source_key IS NULL), "
            "count(*) FILTER (WHERE score IS NULL OR isnan(score) OR score < 0 OR score > 1) "
            "FROM read_parquet($1)", params=[[str(f) for f in files]]).fetchall()[0]
    problems = []
    if rows != expected_rows:
        problems.append(f"output check: {rows} predictions staged, {expected_rows} rows scored")
    if bad:
        problems.append(f"output check: {bad} predictions have a null or NaN score or one outside [0, 1]")
    if null_keys:
        problems.append(f"output check: {null_keys} predictions have no source key")
    if rows - null_keys - keys:
        problems.append(f"output check: {rows - null_keys - keys} extra predictions for source keys "
                        "that already have one")
    return problems
