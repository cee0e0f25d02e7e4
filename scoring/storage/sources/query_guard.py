"""The sandbox of a job's query: what a submitted SELECT may read, checked on DuckDB's parsed statement.

A job query is untrusted SQL (whoever may submit a job is not trusted with the worker's files or settings).
Two layers, after DuckDB's own advice for embedding applications
(https://duckdb.org/docs/stable/operations_manual/securing_duckdb/overview):

1. **The parsed statement** (``json_serialize_sql``, DuckDB's own parser, never string matching) may name only
   the allowed tables and views (``jobs.allowed_tables``; default: the configured source table, or the tables
   the configured source query reads) and CTEs it defines itself; no table function except a few value
   generators (``range``, ``generate_series``, ``unnest``); no ``SHOW``/``DESCRIBE``/``SUMMARIZE``; no function
   that reveals settings, paths, the environment or the catalog (``current_setting``, ``getenv``, ``duckdb_*``,
   ``pragma_*``, ...); no other database's catalog.
2. **The connection** that runs it (``duck_connect(..., sandboxed=True)``) has ``enable_external_access = false`` (no file, network or extension access
   from SQL: ``read_csv``, ``glob``, ``ATTACH``, ``COPY`` all fail even if the check missed one) and
   ``lock_configuration = true`` (the query cannot ``SET`` it back).

Error messages of a job never echo values: ``redact_values`` replaces every quoted literal of a DuckDB error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import duckdb

from scoring.errors import ConfigError
from scoring.storage.duck import duck_connect

# Table functions that only generate values from their arguments (no catalog, file or setting behind them).
VALUE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Scalar functions that reveal the worker's settings, environment, paths or catalog.
REVEALING_FUNCTIONS = frozenset({
    "current_setting", "getenv", "current_database", "current_catalog", "current_schema", "current_schemas",
    "current_user", "session_user", "user", "version", "platform", "txid_current", "getvariable",
    "current_query", "pg_typeof", "has_table_privilege", "has_schema_privilege", "has_database_privilege",
    "has_column_privilege", "has_function_privilege", "has_sequence_privilege", "has_any_column_privilege",
    "pg_has_role", "which_secret", "read_text", "read_blob", "query", "query_table", "make_timestamp_ns",
    "enum_range",
})
REVEALING_PREFIXES = ("duckdb_", "pragma_", "pg_", "sqlite_", "information_schema", "icu_", "test_")
MAX_MESSAGE = 300
_QUOTED = re.compile(r"'(?:[^']|'')*'")


def redact_values(message: str, limit: int = MAX_MESSAGE) -> str:
    """The first line of a DuckDB error with every single-quoted literal replaced by ``'…'`` and cut to
    ``limit`` characters: identifiers (double-quoted) stay, values never reach a message, ledger or log."""
    first = (message.strip().splitlines() or [""])[0]
    first = _QUOTED.sub("'…'", first)
    return first if len(first) <= limit else first[: limit - 1] + "…"


def parse_select(query: str, what: str = "a job query") -> dict[str, Any]:
    """DuckDB's parse tree of one SELECT (``json_serialize_sql``), on a private in-memory connection.

    Raises:
        ConfigError: not parseable, or a statement DuckDB cannot serialize (it serializes SELECTs only).
    """
    con = duck_connect(":memory:", utc=False, sandboxed=True)
    try:
        raw = con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    except duckdb.Error as exc:
        raise ConfigError(f"{what} cannot be checked: {redact_values(str(exc))}") from None
    finally:
        con.close()
    tree = json.loads(raw[0]) if raw else {"error": True}
    if tree.get("error"):
        raise ConfigError(f"{what} cannot be checked: only a plain SELECT is accepted "
                          f"({redact_values(str(tree.get('error_message', 'parse error')))})")
    if len(tree.get("statements", [])) != 1:
        raise ConfigError(f"{what} must be exactly one SELECT statement")
    return tree["statements"][0]


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every dict of the parse tree, depth first."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _cte_names(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in _nodes(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            names.update(str(entry.get("key", "")).lower() for entry in cte_map.get("map", []))
    return names


def _table_name(node: dict[str, Any]) -> str:
    schema = str(node.get("schema_name") or "")
    table = str(node.get("table_name") or "")
    return f"{schema}.{table}" if schema else table


def tables_read(query: str) -> list[str]:
    """The tables and views a SELECT names (``schema.table`` or ``table``, lower case; CTEs excluded)."""
    tree = parse_select(query)
    ctes = _cte_names(tree)
    found = []
    for node in _nodes(tree):
        if node.get("type") == "BASE_TABLE":
            name = _table_name(node).lower()
            if name not in ctes and name not in found:
                found.append(name)
    return found


def _allowed(name: str, allowed: set[str]) -> bool:
    """``t`` matches an allowed ``t`` or ``main.t``; ``s.t`` matches ``s.t`` (and ``t`` when s is main)."""
    if name in allowed:
        return True
    schema, _, table = name.rpartition(".")
    if not schema:
        return f"main.{name}" in allowed
    return schema == "main" and table in allowed


def check_job_query(query: str, allowed_tables: Iterable[str] | None, what: str = "a job query") -> None:
    """Refuse a job query that reads anything but the allowed tables, or calls a revealing function.

    Args:
        query: the submitted SQL.
        allowed_tables: ``table`` or ``schema.table`` names (case-insensitive); None: any table or view of the
            database the query runs on (a configured query such as ``labels.query``: its tables are the
            operator's choice, but no file, table function, other catalog or revealing function).
        what: how messages name the query (``"a job query"``, ``"labels.query"``).

    Raises:
        ConfigError: one line naming what is refused (a table, a function, a catalog), never a value.
    """
    tree = parse_select(query, what)
    allowed = {t.lower() for t in allowed_tables} if allowed_tables is not None else None
    ctes = _cte_names(tree)
    for node in _nodes(tree):
        kind = node.get("type")
        if kind == "SHOW_REF":
            raise ConfigError(f"{what} may not use SHOW, DESCRIBE or SUMMARIZE; select from the allowed tables")
        if kind == "BASE_TABLE":
            if node.get("catalog_name"):
                raise ConfigError(f"{what} may not name a database ({node['catalog_name']!r}); "
                                  "select from the allowed tables")
            name = _table_name(node).lower()
            if name in ctes and not node.get("schema_name"):
                continue
            if allowed is not None and not _allowed(name, allowed):
                raise ConfigError(f"{what} may read only {', '.join(sorted(allowed)) or 'no table'} "
                                  f"(jobs.allowed_tables), not {name[:80]!r}")
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            fname = str(function.get("function_name", "")).lower()
            if fname not in VALUE_TABLE_FUNCTIONS or function.get("catalog") or function.get("schema"):
                raise ConfigError(f"{what} may not call the table function {fname[:80]!r}; "
                                  "select from the allowed tables")
        elif node.get("class") == "FUNCTION":
            fname = str(node.get("function_name", "")).lower()
            if fname in REVEALING_FUNCTIONS or fname.startswith(REVEALING_PREFIXES) or node.get("catalog"):
                raise ConfigError(f"{what} may not call {fname[:80]!r} (it reveals the worker's settings, "
                                  "files or catalog)")

