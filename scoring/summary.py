"""The daily summary the report DAG refreshes after each publish: rows, mean score and positive rate per day
and model version. A stand-in with the same entry point as the reports package (``refresh_reports(cfg)``),
kept in this one module so it can be swapped for it.
"""

from __future__ import annotations

import logging
from typing import Any

from scoring.config import Config
from scoring.errors import PublishError
from scoring.sqlident import quote

logger = logging.getLogger(__name__)

SUMMARY_TABLE = "daily_summary"


def summary_sql(predictions: str, summary: str) -> list[str]:
    """Statements that rebuild ``summary`` from ``predictions`` (both quoted names), run in one transaction."""
    return [
        f"CREATE TABLE IF NOT EXISTS {summary} (day DATE NOT NULL, model_name VARCHAR NOT NULL, "
        "model_version INTEGER NOT NULL, rows BIGINT NOT NULL, mean_score DOUBLE PRECISION, "
        "positive_rate DOUBLE PRECISION, refreshed_at TIMESTAMPTZ NOT NULL)",
        f"DELETE FROM {summary}",  # noqa: S608 - quoted identifiers
        f"INSERT INTO {summary} SELECT day, model_name, model_version, count(*), avg(score), "  # noqa: S608
        f"avg(CAST(label AS DOUBLE PRECISION)), current_timestamp FROM {predictions} GROUP BY 1, 2, 3",
    ]


def refresh_reports(cfg: Config) -> dict[str, Any]:
    """Rebuild the daily summary table from the whole predictions table, atomically.

    Returns:
        The number of (day, model, version) rows and the summary table's name.
    """
    if cfg.results.kind != "duckdb":
        raise PublishError(f"the daily summary stand-in supports DuckDB results only, not {cfg.results.kind!r}")
    from scoring.results.duckdb_store import DuckDBResults

    results = DuckDBResults(cfg.results)
    results.ensure_schema()
    with results.connect() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in summary_sql(quote(cfg.results.table), quote(SUMMARY_TABLE)):
                con.execute(statement)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        rows = con.sql(f"SELECT count(*) FROM {quote(SUMMARY_TABLE)}").fetchall()[0][0]  # noqa: S608
    logger.info("daily summary rebuilt: %s rows", rows)
    return {"table": SUMMARY_TABLE, "rows": int(rows)}
