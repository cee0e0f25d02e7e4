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
from scoring.storage.results.tables import QUARANTINE, TableSpec, all_tables

logger = logging.getLogger(__name__)

LOCK_WAIT_S = 120.0
TYPES = {"string": "VARCHAR", "float": "DOUBLE", "int8": "TINYINT", "int32": "INTEGER", "int64": "BIGINT",
         "date": "DATE", "timestamptz": "TIMESTAMPTZ", "bool": "BOOLEAN", "json": "VARCHAR"}


def create_sql(spec: TableSpec) -> str:
    """CREATE TABLE IF NOT EXISTS for one spec. Predictions carry no primary key in DuckDB: an ART index
    over millions of rows slows every publish, and keys are checked unique before publishing instead."""
    cols = [f"{quote(c.name)} {TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in spec.columns]
    if spec.primary_key and not spec.partitioned:
        cols.append(f"PRIMARY KEY ({', '.join(quote(c) for c in spec.primary_key)})")
    return f"CREATE TABLE IF NOT EXISTS {quote(spec.name)} ({', '.join(cols)})"


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
        with self.connect() as con:
            for spec in all_tables(self.cfg.table):
                con.execute(create_sql(spec))
            from scoring.storage.results.views import create_duckdb_views

            create_duckdb_views(con)  # the report views over the tables above

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
                 params: list[Any]) -> None:
        table = quote(spec.name)
        con.execute(f"DELETE FROM {table} WHERE day = $1 AND model_name = $2",  # noqa: S608 - quoted
                    [run.day, run.model_name])
        if select:
            con.execute(f"INSERT INTO {table} ({', '.join(map(quote, spec.column_names))}) {select}",  # noqa: S608
                        params)

    def publish(self, run: RunRecord, prediction_files: list[Path], quarantine_files: list[Path],
                extra: dict[str, pa.Table] | None = None) -> None:
        files = [str(p) for p in prediction_files]
        qfiles = [str(p) for p in quarantine_files]
        head = [run.run_id, run.day, run.model_name]
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                self._replace(con, all_tables(self.cfg.table)[0], run,
                              "SELECT source_key, score, label, $1, $2, $3, $4, $5 FROM read_parquet($6)"
                              if files else "",
                              [run.model_name, run.model_version, run.run_id, run.day, run.started_at, files])
                self._replace(con, QUARANTINE, run,
                              "SELECT $1, $2, $3, source_key, column_name, rule, value, row_json "
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
                                "SELECT $1, $2, $3, source_key, column_name, rule, value, row_json "
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
