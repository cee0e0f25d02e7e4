"""Refresh what reports read: (re)create the views and rebuild summaries that are missing or stale.

Runs publish their summaries in the publish transaction, so normally there is nothing to rebuild. A partition
lacks them (or has a previous run's) when it was published before the summaries existed or by a caller that
did not pass ``summarize(...)``; ``refresh_reports`` then recomputes that partition from the predictions
table, which reads only that (day, model).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from scoring.reports.summaries import STATS_EXPRS, TASK_EXPR, Partition, bin_expr, summary_tables
from scoring.sqlident import quote
from scoring.storage.results.tables import PREDICTION_STATS, QUARANTINE_COUNTS, SCORE_BINS
from scoring.storage.results.views import VIEW_NAMES, create_postgres_views

if TYPE_CHECKING:
    from scoring.config import Config, ResultsConfig

logger = logging.getLogger(__name__)


class _Session:
    """One connection of either dialect: parameterized reads and a bulk insert, in one transaction."""

    def __init__(self, con: Any, kind: str, schema: str | None) -> None:
        self.con, self.kind, self.schema = con, kind, schema
        self.mark = "?" if kind == "duckdb" else "%s"

    def name(self, table: str) -> str:
        return quote(table) if self.schema is None else f"{quote(self.schema)}.{quote(table)}"

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        sql = sql.replace("?", self.mark)
        if self.kind == "duckdb":
            return self.con.sql(sql, params=params or None).to_arrow_table().to_pylist()
        cur = self.con.execute(sql, params or None)
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        self.con.execute(sql.replace("?", self.mark), params or None)

    def insert(self, table: str, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        cols = ", ".join(quote(c) for c in rows.column_names)
        if self.kind == "duckdb":
            self.con.register("summary_rows", rows)
            self.con.execute(f"INSERT INTO {self.name(table)} ({cols}) SELECT {cols} FROM summary_rows")  # noqa: S608
            self.con.unregister("summary_rows")
            return
        marks = ", ".join(["%s"] * rows.num_columns)
        with self.con.cursor() as cur:
            cur.executemany(f"INSERT INTO {self.name(table)} ({cols}) VALUES ({marks})",  # noqa: S608 - quoted
                            [tuple(r.values()) for r in rows.to_pylist()])


@contextmanager
def _session(cfg: ResultsConfig) -> Iterator[_Session]:
    if cfg.kind == "duckdb":
        from scoring.storage.results.duckdb_store import DuckDBResults

        store = DuckDBResults(cfg)
        store.ensure_schema()  # tables and views
        with store.connect() as con:
            yield _Session(con, "duckdb", None)
        return
    import psycopg

    from scoring.errors import ConfigError, PublishError

    if not cfg.url:
        raise ConfigError("refreshing PostgreSQL reports needs results.url")
    from scoring.storage.results.postgres_store import PostgresResults

    # Migrates tables created by earlier versions (the views name their new columns); no DDL when current.
    PostgresResults(cfg).ensure_schema()
    with psycopg.connect(cfg.url, autocommit=True) as con:
        try:
            create_postgres_views(con, cfg.db_schema)
        except psycopg.errors.UndefinedTable as exc:
            raise PublishError(f"results schema {cfg.db_schema!r} lacks a results table "
                               f"({str(exc).splitlines()[0]}): score a day first") from None
        yield _Session(con, "postgres", cfg.db_schema)


def stale_partitions(s: _Session) -> list[Partition]:
    """Partitions whose latest successful run has no summaries (or another run's)."""
    sql = f"""
        SELECT r.day, r.model_name, r.model_version, r.run_id, r.rows_rejected FROM (
            SELECT day, model_name, model_version, run_id, rows_rejected,
                   ROW_NUMBER() OVER (PARTITION BY day, model_name ORDER BY started_at DESC) AS rn
            FROM {s.name('runs')} WHERE status = 'success') r
        WHERE r.rn = 1 AND NOT EXISTS (
            SELECT 1 FROM {s.name(PREDICTION_STATS.name)} p
            WHERE p.day = r.day AND p.model_name = r.model_name AND p.run_id = r.run_id)
        ORDER BY r.day, r.model_name"""  # noqa: S608 - quoted identifiers
    return [Partition(r["day"], r["model_name"], r["model_version"], r["run_id"], r["rows_rejected"] or 0)
            for r in s.rows(sql)]


def rebuild_partition(s: _Session, part: Partition, predictions: str) -> None:
    """Recompute one partition's summaries from the predictions and quarantine tables and replace them. The
    task is inferred from the rows (``TASK_EXPR``): the predictions table does not record it."""
    where, key = "WHERE day = ? AND model_name = ?", [part.day, part.model_name]
    pred = s.name(predictions)
    stats = s.rows(f"SELECT {STATS_EXPRS}, {TASK_EXPR} FROM {pred} {where}", key)[0]  # noqa: S608 - quoted
    expr = bin_expr(stats["task"], stats["score_min"], stats["score_max"])
    bins = {r["bin"]: r["n"] for r in s.rows(f"SELECT {expr} AS bin, count(*) AS n FROM {pred} {where} "  # noqa: S608
                                             "GROUP BY 1", key)}
    rules = s.rows(f"SELECT rule, column_name, count(*) AS {quote('count')} FROM {s.name('quarantine')} "  # noqa: S608
                   f"{where} GROUP BY rule, column_name", key)
    tables = summary_tables(part, stats, bins, rules)
    for spec in (PREDICTION_STATS, SCORE_BINS, QUARANTINE_COUNTS):
        s.execute(f"DELETE FROM {s.name(spec.name)} {where}", key)  # noqa: S608 - quoted
        s.insert(spec.name, tables[spec.name])


def refresh_reports(cfg: Config) -> dict[str, int]:
    """(Re)create the report views and rebuild missing or stale summaries; the report DAG calls this.

    Args:
        cfg: the loaded configuration (its ``results`` section says where).

    Returns:
        ``{"summaries_rebuilt": partitions recomputed, <view>: rows in that view, ...}``.
    """
    out: dict[str, int] = {}
    with _session(cfg.results) as s:
        parts = stale_partitions(s)
        for part in parts:
            s.execute("BEGIN")
            try:
                rebuild_partition(s, part, cfg.results.table)
                s.execute("COMMIT")
            except BaseException:
                s.execute("ROLLBACK")
                raise
            logger.info("rebuilt report summaries of %s %s (run %s)", part.model_name, part.day, part.run_id)
        out["summaries_rebuilt"] = len(parts)
        for view in VIEW_NAMES:
            out[view] = int(s.rows(f"SELECT count(*) AS n FROM {s.name(view)}")[0]["n"])  # noqa: S608 - quoted
    logger.info("report views refreshed: %s", out)
    return out

