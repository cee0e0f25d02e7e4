"""A quarantined value is kept up to 1000 characters with a visible marker of what was cut (a multi-megabyte
category would otherwise be copied into the quarantine table and its row_json), end to end through
``scoring run`` on a real DuckDB source; the row's other values and the key are kept whole."""

from __future__ import annotations

import json

import duckdb

from scoring.config import load_config
from scoring.quality.quarantine import QUARANTINE_VALUE_CHARS
from scoring.run import pipeline
from tests.conftest import write_config
from tests.quality.helpers import CLEAN_DAY

LONG = 200_000


def test_a_huge_value_is_quarantined_bounded_with_a_marker(tmp_path, sample_db, store) -> None:
    with duckdb.connect(str(sample_db), read_only=True) as con:
        victim = con.execute("SELECT min(application_id) FROM loan_applications WHERE CAST(applied_at AS DATE) = ?",
                             [CLEAN_DAY]).fetchall()[0][0]
    query = ("SELECT * REPLACE (CASE WHEN application_id = " + str(victim) + f" THEN repeat('x', {LONG}) "
             "ELSE CAST(credit_score AS VARCHAR) END AS credit_score) FROM loan_applications")
    cfg = load_config(write_config(tmp_path, sample_db, store, source={"table": None, "query": query},
                                   validation={"range_rule": "minmax", "schema_drift": "warn"}))
    result = pipeline.run_day(cfg, CLEAN_DAY)
    assert result.rows_in == result.rows_scored + result.rows_rejected and result.rows_rejected == 1
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        key, column, value, row_json = con.execute(
            "SELECT source_key, column_name, value, row_json FROM quarantine").fetchall()[0]
        details = con.execute("SELECT details FROM runs").fetchall()[0][0]
    assert (key, column) == (str(victim), "credit_score")
    marker = f"… ({LONG - QUARANTINE_VALUE_CHARS} more characters)"
    assert value == "x" * QUARANTINE_VALUE_CHARS + marker
    row = json.loads(row_json)
    assert row["credit_score"] == value and str(row["application_id"]) == str(victim)
    assert len(row_json) < 5 * QUARANTINE_VALUE_CHARS and len(str(details)) < LONG
