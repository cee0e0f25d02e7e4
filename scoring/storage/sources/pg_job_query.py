"""A job's query on a PostgreSQL source: run as a read-only role, checked by the database itself.

PostgreSQL's own parser is not available to us, and DuckDB's parse tree (``query_guard``) does not see what
a PostgreSQL function does inside (``query_to_xml('SELECT ...')`` runs any SQL the caller may run). So the
sound boundary is the database's own privilege system, and three layers check it:

1. **The parsed statement** (``query_guard.check_job_query``, DuckDB's parser, which descends from
   PostgreSQL's): one plain SELECT naming only ``jobs.allowed_tables``, no table function but value
   generators, no function revealing settings, paths or the catalog (``pg_*``, ``current_setting``, ...).
   A statement DuckDB cannot parse is refused.
2. **The role** (``jobs.postgres_url``: the query connects as that user, never as the source's): checked on
   every job before the query runs: not a superuser, no ``BYPASSRLS``, not a member of a role that reads
   server files, runs programs or reads all data (``pg_read_server_files``, ``pg_write_server_files``,
   ``pg_execute_server_program``, ``pg_read_all_data``, ``pg_read_all_settings``), and able to ``SELECT``
   no table or view of the database other than the allowed ones (``has_table_privilege`` /
   ``has_any_column_privilege`` over ``pg_class``). PostgreSQL then refuses anything else the query
   tries, however it is spelled: this is the allowed-tables check that holds.
3. **The plan** (``EXPLAIN (FORMAT JSON, VERBOSE)``): every relation scanned is an allowed one (a catalog
   table such as ``pg_authid`` or a view's hidden table is refused by name) and every function scan a value
   generator. A view in ``jobs.allowed_tables`` therefore needs the tables it reads listed too.

The transaction is ``REPEATABLE READ, READ ONLY`` with ``statement_timeout`` (``jobs.statement_timeout_s``)
and lock_timeout; error messages never echo values (single- and double-quoted parts are redacted).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from scoring.errors import ConfigError, SourceError
from scoring.storage.pgconn import error_line
from scoring.storage.sources.postgres_source import PostgresSource
from scoring.storage.sources.query_guard import MAX_MESSAGE, VALUE_TABLE_FUNCTIONS

if TYPE_CHECKING:
    from scoring.config import JobsConfig, SourceConfig
    from scoring.dates import DataInterval

logger = logging.getLogger(__name__)

# Predefined roles that read or write server files, run programs, or read every table or setting.
POWERFUL_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program",
                  "pg_read_all_data", "pg_write_all_data", "pg_read_all_settings", "pg_monitor")
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")

_ROLE_SQL = """SELECT r.rolname, r.rolsuper, r.rolbypassrls,
    ARRAY(SELECT b.rolname FROM pg_roles b WHERE b.rolname = ANY(ARRAY[{roles}])
          AND pg_has_role(current_user, b.oid, 'MEMBER') ORDER BY b.rolname)::text AS powerful,
    current_schema() AS current_schema
FROM pg_roles r WHERE r.rolname = current_user"""
_READABLE_SQL = """SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\\_%' AND (has_table_privilege(c.oid, 'SELECT')
       OR has_any_column_privilege(c.oid, 'SELECT'))
ORDER BY 1, 2"""


def redact_pg(message: str, limit: int = MAX_MESSAGE) -> str:
    """One line of a PostgreSQL error with every quoted part (values are double-quoted in "invalid input
    syntax" messages) replaced by ``'…'``, cut to ``limit`` characters."""
    first = _QUOTED.sub("'…'", (message.strip().splitlines() or [""])[0])
    return first if len(first) <= limit else first[: limit - 1] + "…"


def is_allowed(schema: str, table: str, allowed: set[str], current_schema: str) -> bool:
    """``schema.table`` is allowed by name, or ``table`` is and ``schema`` is the role's current schema."""
    return f"{schema}.{table}".lower() in allowed or (schema == current_schema and table.lower() in allowed)


def plan_relations(plan: Any) -> Iterator[tuple[str, Any, Any]]:
    """``("relation", schema, name)`` and ``("function", name, None)`` for every scan of an EXPLAIN JSON plan."""
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "Relation Name" in node:
                yield "relation", node.get("Schema"), node["Relation Name"]
            if "Function Name" in node:
                yield "function", node["Function Name"], None
            stack.extend(v for v in node.values() if isinstance(v, list | dict))


class PgQueryInput(PostgresSource):
    """The rows of one job SELECT on a PostgreSQL source, read as ``jobs.postgres_url``'s role (module doc)."""

    def __init__(self, cfg: SourceConfig, query: str, jobs: JobsConfig, allowed_tables: Iterable[str]) -> None:
        if not jobs.postgres_url:
            raise ConfigError("query jobs on a PostgreSQL source run as a read-only role: set jobs.postgres_url "
                              "(see docs/security.md)")
        own = cfg.model_copy(update={"url": jobs.postgres_url, "connection_id": None, "table": None,
                                     "query": query})
        super().__init__(own)
        self.allowed = {t.lower() for t in allowed_tables}
        try:
            self._execute(f"SET LOCAL statement_timeout = {max(1, int(jobs.statement_timeout_s * 1000))}")
            self._execute(f"SET LOCAL lock_timeout = {max(1, int(jobs.statement_timeout_s * 1000))}")
            current_schema = self._check_role()
            self._check_plan(query, current_schema)
        except BaseException:
            self.close()
            raise

    @property
    def describe(self) -> str:
        return "job query"

    def _error(self, exc: BaseException) -> SourceError:
        return SourceError(f"job query failed: {redact_pg(error_line(exc, self.url))}")

    def _check_role(self) -> str:
        """Refuse a role that can do more than read the allowed tables; returns its current schema."""
        rows = self._execute(_ROLE_SQL.format(roles=", ".join(f"'{r}'" for r in POWERFUL_ROLES)))
        if not rows:
            raise ConfigError("jobs.postgres_url: its role is not in pg_roles")
        name, superuser, bypass, powerful, current_schema = rows[0]
        if superuser or bypass:
            raise ConfigError(f"jobs.postgres_url connects as {name!r}, a {'superuser' if superuser else 'BYPASSRLS role'}:"
                              " job queries need a role that may only SELECT jobs.allowed_tables (docs/security.md)")
        powerful = powerful.strip("{}")
        if powerful:
            raise ConfigError(f"jobs.postgres_url's role {name!r} is a member of {powerful}: job queries need a role "
                              "that may only SELECT jobs.allowed_tables (docs/security.md)")
        extra = [f"{s}.{t}" for s, t in self._execute(_READABLE_SQL)
                 if not is_allowed(s, t, self.allowed, current_schema)]
        if extra:
            more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
            raise ConfigError(f"jobs.postgres_url's role {name!r} can read {', '.join(extra[:3])}{more}, which "
                              "jobs.allowed_tables does not list: revoke its SELECT there (docs/security.md)")
        return str(current_schema)

    def _check_plan(self, query: str, current_schema: str) -> None:
        """Refuse a plan scanning a relation outside the allowed ones or a function that is not a value
        generator (EXPLAIN does not run the query)."""
        from adbc_driver_postgresql import StatementOptions

        with self.con.cursor() as cur:  # EXPLAIN cannot run inside COPY: the plain protocol for this one
            cur.adbc_statement.set_options(**{StatementOptions.USE_COPY.value: "false"})
            try:
                cur.execute(f"EXPLAIN (FORMAT JSON, VERBOSE) SELECT * FROM ({query}) AS job")  # noqa: S608
                plan = cur.fetchall()[0][0]
            except Exception as exc:  # noqa: BLE001 - every driver error becomes one line
                raise self._error(exc) from None
        plan = json.loads(plan) if isinstance(plan, str) else plan
        for kind, first, second in plan_relations(plan):
            if kind == "relation" and not is_allowed(str(first), str(second), self.allowed, current_schema):
                raise ConfigError(f"a job query may read only {', '.join(sorted(self.allowed)) or 'no table'} "
                                  f"(jobs.allowed_tables), not {f'{first}.{second}'[:80]!r}")
            if kind == "function":
                fname = str(first).rpartition(".")[2].lower()
                if fname not in VALUE_TABLE_FUNCTIONS:
                    raise ConfigError(f"a job query may not call the table function {fname[:80]!r}; "
                                      "select from the allowed tables")

    # Every row of the query: no interval (``interval`` is None for a job).
    def _bind(self, interval: DataInterval | None) -> Any:
        return None if interval is None else super()._bind(interval)

    def interval_sql(self, placeholder: tuple[str, str] | None, select: str = "*") -> str:
        if placeholder is None:
            return f"SELECT {select} FROM {self.relation_sql()} WHERE true"  # noqa: S608 - checked SELECT
        return super().interval_sql(placeholder, select)

    def count(self, interval: DataInterval | None = None) -> int:
        return super().count(interval)  # type: ignore[arg-type]

    def batches(self, interval: DataInterval | None, batch_rows: int) -> Iterator[Any]:
        return super().batches(interval, batch_rows)  # type: ignore[arg-type]
