"""The report views, declared once and rendered for DuckDB or PostgreSQL.

Every view reads the small per-day summary tables kept up to date at publish time (or the run ledger), never
the predictions table, so a report costs the same whatever the number of predictions per day.

- ``daily_summary``: day, model, version, rows scored / quarantined, mean score, positive rate, p10/p50/p90,
  min/max, positives, run id and the model's task (binary, multiclass, regression; NULL before it was recorded).
- ``score_histogram``: day, model, version, bin (0..19 over [0, 1]; for regression over the day's [min, max]),
  bin bounds, count and share of the day.
- ``quarantine_summary``: day, model, rule, column, rows.
- ``drift_summary``: day, model, version, feature, PSI, status; from the ``drift`` table when it exists,
  otherwise an empty view with the same columns (the report then says drift monitoring is not installed).
- ``run_history``: every run of the ledger with ``is_latest`` (the last attempt of its day and model).

Each view carries a comment fingerprinting its SQL; ``view_statements`` given the current comments skips
views already up to date, so refreshing an unchanged schema runs no DDL (PostgreSQL readers are not blocked).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

DRIFT_TABLE = "drift"


@dataclass(frozen=True)
class Dialect:
    """What differs between the two SQL dialects the views are written for."""

    name: str
    text: str  # the type name of unbounded strings
    replace_view: bool  # CREATE OR REPLACE VIEW may change columns (DuckDB); else DROP + CREATE

    def create(self, qualified: str, select: str) -> list[str]:
        """The statements (re)creating one view, ending with its fingerprint comment."""
        comment = f"COMMENT ON VIEW {qualified} IS '{fingerprint(select)}'"
        if self.replace_view:
            return [f"CREATE OR REPLACE VIEW {qualified} AS {select}", comment]
        return [f"DROP VIEW IF EXISTS {qualified}", f"CREATE VIEW {qualified} AS {select}", comment]


def fingerprint(select: str) -> str:
    """The comment marking a view created from ``select`` (hex digest: safe inside a SQL string literal)."""
    return "scoring view " + hashlib.sha256(select.encode()).hexdigest()[:16]


DUCKDB = Dialect("duckdb", "VARCHAR", replace_view=True)
POSTGRES = Dialect("postgres", "TEXT", replace_view=False)
DIALECTS = {d.name: d for d in (DUCKDB, POSTGRES)}


@dataclass(frozen=True)
class View:
    """One report view: a SELECT over the results tables, named as ``{table}`` placeholders."""

    name: str
    select: str
    description: str


VIEWS: tuple[View, ...] = (
    View("daily_summary", """
        SELECT day, model_name, model_version, rows_scored, rows_quarantined,
               CAST(rows_quarantined AS DOUBLE PRECISION) / NULLIF(rows_scored + rows_quarantined, 0)
                   AS quarantined_share,
               mean_score, positive_rate, score_p10, score_p50, score_p90, score_min, score_max, positives, run_id,
               task
        FROM {prediction_stats}""",
         "one row per (day, model): counts, mean score, positive rate, score quantiles and the model's task"),
    View("score_histogram", """
        SELECT day, model_name, model_version, bin, bin_lo, bin_hi, "count",
               CAST("count" AS DOUBLE PRECISION) / NULLIF(SUM("count") OVER (PARTITION BY day, model_name), 0)
                   AS share
        FROM {score_bins}""",
         "rows per score bin (20 equal-width bins over [0, 1], regression: over the day's range) per (day, model)"),
    View("quarantine_summary", """
        SELECT day, model_name, rule, column_name, "count" FROM {quarantine_counts}""",
         "quarantined rows per (day, model, rule, column)"),
    View("drift_summary", """
        SELECT day, model_name, model_version, feature, psi, status FROM {drift}""",
         "population stability index per (day, model, feature) and its status"),
    View("run_history", """
        SELECT run_id, day, model_name, model_version, status, rows_in, rows_rejected, rows_scored,
               started_at, finished_at, duration_s, error, "trigger",
               ROW_NUMBER() OVER (PARTITION BY day, model_name ORDER BY started_at DESC) = 1 AS is_latest,
               rows_staged
        FROM {runs}""",
         "every run of the ledger; is_latest marks the last attempt of each (day, model); rows_scored is what "
         "the run published, rows_staged what it scored into staging (they differ when it published nothing)"),
)
VIEW_NAMES = tuple(v.name for v in VIEWS)


def _empty_drift(dialect: Dialect) -> str:
    t = dialect.text
    return (f"SELECT CAST(NULL AS DATE) AS day, CAST(NULL AS {t}) AS model_name, "
            f"CAST(NULL AS INTEGER) AS model_version, CAST(NULL AS {t}) AS feature, "
            f"CAST(NULL AS DOUBLE PRECISION) AS psi, CAST(NULL AS {t}) AS status WHERE 1 = 0")


def view_statements(dialect: Dialect | str, qualify: Callable[[str], str], has_drift: bool,
                    current: Mapping[str, str | None] | None = None) -> list[str]:
    """The statements creating every report view.

    Args:
        dialect: ``DUCKDB``, ``POSTGRES`` or their names.
        qualify: the quoted, qualified name of a results table or view (e.g. ``store.table_name``).
        has_drift: whether the ``drift`` table exists; without it ``drift_summary`` is an empty view.
        current: existing view name -> its comment; views whose comment is their fingerprint are skipped.
            None recreates every view.
    """
    d = DIALECTS[dialect] if isinstance(dialect, str) else dialect
    names = {n: qualify(n) for n in ("prediction_stats", "score_bins", "quarantine_counts", "runs", DRIFT_TABLE)}
    out: list[str] = []
    for view in VIEWS:
        select = _empty_drift(d) if view.name == "drift_summary" and not has_drift else view.select.format(**names)
        select = " ".join(select.split())
        if current is not None and current.get(view.name) == fingerprint(select):
            continue
        out.extend(d.create(qualify(view.name), select))
    return out


def create_duckdb_views(con: Any) -> int:
    """Create the report views missing or outdated in an open DuckDB connection (default schema); returns
    the number of views (re)created."""
    from scoring.sqlident import quote

    has_drift = bool(con.sql("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                             "AND table_name = $1 AND table_type = 'BASE TABLE'",
                             params=[DRIFT_TABLE]).fetchall())
    current = dict(con.sql("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal "
                           "AND database_name = current_database() AND schema_name = current_schema()").fetchall())
    statements = view_statements(DUCKDB, quote, has_drift, current)
    for stmt in statements:
        con.execute(stmt)
    return sum(s.startswith("CREATE") for s in statements)


def create_postgres_views(conn: Any, schema: str) -> None:
    """(Re)create the report views in ``schema`` through an open psycopg connection (one transaction).

    The PostgreSQL results store calls this from its ``ensure_schema`` after creating the tables.
    """
    from scoring.sqlident import quote

    def qualify(name: str) -> str:
        return f"{quote(schema)}.{quote(name)}"

    with conn.transaction():
        has_drift = conn.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                                 "AND table_name = %s AND table_type = 'BASE TABLE'",
                                 (schema, DRIFT_TABLE)).fetchone() is not None
        current = dict(conn.execute("SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
                                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                    "WHERE n.nspname = %s AND c.relkind = 'v'", (schema,)).fetchall())
        for stmt in view_statements(POSTGRES, qualify, has_drift, current):
            conn.execute(stmt)
