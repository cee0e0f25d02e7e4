"""DuckDB results store: one file, short-lived connections, one transaction per publish."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from scoring.errors import PublishError
from scoring.sqlident import quote
from scoring.storage.results.base import RUN_COLUMNS, ResultsStore, RunRecord
from scoring.storage.results.evolution import (
    ExistingColumn,
    missing_passthrough,
    sql_type,
    staged_columns,
    table_changes,
)
from scoring.storage.results.tables import (
    QUARANTINE,
    STAGED_PREDICTION_COLUMNS,
    TableSpec,
    all_tables,
    predictions_spec,
)

logger = logging.getLogger(__name__)

LOCK_WAIT_S = 120.0
RUN_CONSTANTS = ("model_name", "model_version", "run_id", "day", "scored_at")  # bound as $1..$5 in this order
TYPES = {"string": "VARCHAR", "float": "DOUBLE", "int8": "TINYINT", "int32": "INTEGER", "int64": "BIGINT",
         "date": "DATE", "timestamptz": "TIMESTAMPTZ", "bool": "BOOLEAN", "json": "VARCHAR"}


def create_sql(spec: TableSpec) -> str:
    """CREATE TABLE IF NOT EXISTS for one spec. Predictions carry no primary key in DuckDB: an ART index
    over millions of rows slows every publish, and keys are checked unique before publishing instead."""
    cols = [f"{quote(c.name)} {TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in spec.columns]
    if spec.primary_key and not spec.partitioned:
        cols.append(f"PRIMARY KEY ({', '.join(quote(c) for c in spec.primary_key)})")
    return f"CREATE TABLE IF NOT EXISTS {quote(spec.name)} ({', '.join(cols)})"


def catalog(con: duckdb.DuckDBPyConnection, table: str | None = None) -> dict[str, dict[str, ExistingColumn]]:
    """The base tables of the default schema (or only ``table``): name -> column -> type and nullability."""
    sql = ("SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'YES' "
           "FROM information_schema.columns c JOIN information_schema.tables t "
           "USING (table_catalog, table_schema, table_name) WHERE t.table_type = 'BASE TABLE' "
           "AND c.table_schema = current_schema() AND c.table_catalog = current_database()")
    rows = con.sql(sql + " AND c.table_name = $1", params=[table]).fetchall() if table else con.sql(sql).fetchall()
    out: dict[str, dict[str, ExistingColumn]] = {}
    for name, column, type_, nullable in rows:
        out.setdefault(name, {})[column] = ExistingColumn(type_, bool(nullable))
    return out


class DuckDBResults(ResultsStore):
    """Predictions, quarantine, runs (and extra tables) in a DuckDB file."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.path = Path(cfg.path)

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting while another process holds DuckDB's single-writer lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
                con.execute("SET TimeZone = 'UTC'")
                return con
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise PublishError(f"cannot open results database {str(self.path)!r}: {exc}") from None
                time.sleep(0.5)

    def table_name(self, name: str) -> str:
        return quote(name)

    def ensure_schema(self) -> None:
        """Create missing tables, migrate tables of earlier versions in place (add the columns they lack,
        drop NOT NULL where the spec allows NULL) and (re)create outdated views. Reads the catalog once and
        runs no DDL when everything is current."""
        with self.connect() as con:
            existing = catalog(con)
            statements = []
            for spec in all_tables(self.cfg.table):
                if spec.name not in existing:
                    statements.append(create_sql(spec))
                    continue
                changes = table_changes(spec, existing[spec.name])
                statements += [f"ALTER TABLE {quote(spec.name)} ADD COLUMN IF NOT EXISTS {quote(c.name)} "
                               f"{TYPES[c.type]}" for c in changes.add]
                statements += [f"ALTER TABLE {quote(spec.name)} ALTER COLUMN {quote(c)} DROP NOT NULL"
                               for c in changes.drop_not_null]
                if changes:
                    logger.info("migrating results table %s: adding %s, dropping NOT NULL on %s", spec.name,
                                [c.name for c in changes.add] or "nothing", list(changes.drop_not_null) or "nothing")
            if statements:
                con.execute("BEGIN TRANSACTION")
                try:
                    for statement in statements:
                        con.execute(statement)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            from scoring.storage.results.views import create_duckdb_views

            create_duckdb_views(con)  # the report views over the tables above, when missing or outdated

    def start_run(self, run: RunRecord) -> None:
        marks = ", ".join(f"${i + 1}" for i in range(len(RUN_COLUMNS)))
        with self.connect() as con:
            con.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({marks})", run.values())  # noqa: S608

    def _update_run(self, con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(RUN_COLUMNS[1:]))
        con.execute(f"UPDATE runs SET {sets} WHERE run_id = $1", run.values())  # noqa: S608 - constant columns

    def fail_run(self, run: RunRecord) -> None:
        with self.connect() as con:
            self._update_run(con, run)

    def _replace(self, con: duckdb.DuckDBPyConnection, spec: TableSpec, run: RunRecord, select: str,
                 params: list[Any], columns: list[str] | None = None) -> None:
        table = quote(spec.name)
        con.execute(f"DELETE FROM {table} WHERE day = $1 AND model_name = $2",  # noqa: S608 - quoted
                    [run.day, run.model_name])
        if select:
            cols = ", ".join(map(quote, columns or spec.column_names))
            con.execute(f"INSERT INTO {table} ({cols}) {select}", params)  # noqa: S608 - quoted

    def _add_passthrough(self, con: duckdb.DuckDBPyConnection, fields: tuple[pa.Field, ...]) -> None:
        """Add the passthrough columns the predictions table lacks (PublishError on a type conflict)."""
        table = self.cfg.table
        missing = missing_passthrough(table, fields, catalog(con, table).get(table, {}))
        for field in missing:
            con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN IF NOT EXISTS {quote(field.name)} "
                        f"{sql_type(field.type, 'duckdb')}")
        if missing:
            logger.info("added passthrough column(s) %s to %s", [f.name for f in missing], table)

    def publish(self, run: RunRecord, prediction_files: list[Path], quarantine_files: list[Path],
                extra: dict[str, pa.Table] | None = None) -> None:
        """See ``ResultsStore.publish``. Staged prediction columns are inserted by name; passthrough columns
        (beyond the staged prediction columns) are added to the predictions table first when it lacks them.

        Raises:
            PublishError: a passthrough column conflicts with a predictions column's name or type.
        """
        files = [str(p) for p in prediction_files]
        qfiles = [str(p) for p in quarantine_files]
        head = [run.run_id, run.day, run.model_name]
        pred = predictions_spec(self.cfg.table)
        staged = staged_columns(prediction_files, pred.column_names)
        values = [c for c in STAGED_PREDICTION_COLUMNS if c in pred.column_names]
        names = [*values, *RUN_CONSTANTS, *(f.name for f in staged.passthrough)]
        select = ", ".join([*(quote(c) if c in staged.core else "NULL" for c in values),  # NULL: staged before
                            "$1", "$2", "$3", "$4", "$5", *(quote(f.name) for f in staged.passthrough)])
        with self.connect() as con:
            if staged.passthrough:
                self._add_passthrough(con, staged.passthrough)
            con.execute("BEGIN TRANSACTION")
            try:
                self._replace(con, pred, run, f"SELECT {select} FROM read_parquet($6, union_by_name = true)"  # noqa: S608
                              if files else "",
                              [run.model_name, run.model_version, run.run_id, run.day, run.started_at, files],
                              names)
                self._replace(con, QUARANTINE, run,
                              "SELECT $1, $2, $3, source_key, column_name, rule, value, row_json, reason "
                              "FROM read_parquet($4)" if qfiles else "", [*head, qfiles])
                for name, rows in (extra or {}).items():
                    spec = next(s for s in all_tables(self.cfg.table) if s.name == name)
                    con.register("extra_rows", rows)
                    self._replace(con, spec, run, f"SELECT {', '.join(map(quote, spec.column_names))} "  # noqa: S608
                                  "FROM extra_rows" if rows.num_rows else "", [])
                    con.unregister("extra_rows")
                self._update_run(con, run)
                before_commit(run)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def record_failure(self, run: RunRecord, quarantine_files: list[Path]) -> None:
        qfiles = [str(p) for p in quarantine_files]
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                if qfiles:
                    con.execute(f"INSERT INTO {quote(QUARANTINE.name)} "  # noqa: S608 - quoted constant
                                f"({', '.join(map(quote, QUARANTINE.column_names))}) "
                                "SELECT $1, $2, $3, source_key, column_name, rule, value, row_json, reason "
                                "FROM read_parquet($4)", [run.run_id, run.day, run.model_name, qfiles])
                self._update_run(con, run)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        if not self.path.exists():
            raise PublishError(f"results database {str(self.path)!r} does not exist yet: run a day first")
        with self.connect(read_only=True) as con:
            return con.sql(sql, params=params or None).to_arrow_table()


def before_commit(run: RunRecord) -> None:
    """Hook called inside the publish transaction just before COMMIT (tests inject failures here)."""
