"""PostgreSQL results store: tables in a configured schema, each publish one transaction.

A publish takes a transaction-scoped advisory lock on (schema, table, day, model), deletes the
partition's rows and bulk-loads the staged Parquet files straight into the tables with ADBC ingest
(binary ``COPY``), then updates the run row and commits. Publishes of the same (day, model) serialize on
the lock; other days take other locks and touch other rows, so they run side by side. A crash or error
before COMMIT leaves every table as it was (the server rolls back a dropped connection).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scoring.errors import PublishError
from scoring.sqlident import quote
from scoring.storage.pgconn import connect, error_line, resolve_url
from scoring.storage.results.base import RUN_COLUMNS, ResultsStore, RunRecord
from scoring.storage.results.tables import QUARANTINE, RUNS, TableSpec, all_tables

logger = logging.getLogger(__name__)

TYPES = {"string": "text", "float": "double precision", "int8": "smallint", "int32": "integer",
         "int64": "bigint", "date": "date", "timestamptz": "timestamptz", "bool": "boolean", "json": "jsonb"}
ARROW = {"string": pa.string(), "float": pa.float64(), "int8": pa.int16(), "int32": pa.int32(),
         "int64": pa.int64(), "date": pa.date32(), "timestamptz": pa.timestamp("us", tz="UTC"),
         "bool": pa.bool_(), "json": pa.json_()}
READ_BATCH = 131_072


def arrow_schema(spec: TableSpec) -> pa.Schema:
    """The Arrow schema whose binary COPY matches the table's column types exactly."""
    return pa.schema([pa.field(c.name, ARROW[c.type], c.nullable) for c in spec.columns])


def conform(column: pa.Array | pa.ChunkedArray, type_: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """Cast one column to the table's Arrow type (JSON text becomes the arrow.json extension)."""
    if column.type == type_:
        return column
    if isinstance(type_, pa.JsonType):
        return column.cast(pa.string()).cast(type_)
    return column.cast(type_)


def _index_name(table: str) -> str:
    return f"{table[:48]}_day_model_idx"


def create_sql(schema: str, spec: TableSpec) -> list[tuple[str, str]]:
    """(object name, DDL) pairs: the table with its primary key and, for partitioned tables, an index on
    (day, model_name) unless the primary key starts with those columns (predictions' does)."""
    table = f"{quote(schema)}.{quote(spec.name)}"
    cols = [f"{quote(c.name)} {TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in spec.columns]
    if spec.primary_key:
        cols.append(f"PRIMARY KEY ({', '.join(quote(c) for c in spec.primary_key)})")
    out = [(spec.name, f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")]
    if spec.partitioned and spec.primary_key[:2] != ("day", "model_name"):
        index = _index_name(spec.name)
        out.append((index, f'CREATE INDEX IF NOT EXISTS "{index}" ON {table} (day, model_name)'))
    return out


def _file_batches(files: list[Path], schema: pa.Schema, constants: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """The staged Parquet rows, batch by batch, completed with the run's constant columns."""
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH):
            n = batch.num_rows
            arrays = [conform(batch.column(f.name), f.type) if f.name in batch.schema.names
                      else pa.repeat(pa.scalar(constants[f.name], f.type), n) for f in schema]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _plain(table: pa.Table) -> pa.Table:
    """Query results without PostgreSQL extension types: numeric -> float64, json/uuid/... -> storage."""
    for i, field in enumerate(table.schema):
        if not isinstance(field.type, pa.BaseExtensionType):
            continue
        storage = pa.chunked_array([c.storage for c in table.column(i).chunks], field.type.storage_type)
        if getattr(field.type, "type_name", "") == "numeric":
            storage = pc.cast(storage, pa.float64())
        table = table.set_column(i, pa.field(field.name, storage.type), storage)
    return table


class PostgresResults(ResultsStore):
    """Predictions, quarantine, runs (and extra tables) in a PostgreSQL schema."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.url = resolve_url(cfg.url, cfg.connection_id)
        self.schema = cfg.db_schema

    def connect(self) -> Any:
        """A new ADBC connection (autocommit off) with ``search_path`` set to the results schema."""
        con = connect(self.url, self.cfg.connect_timeout_s, "results", PublishError)
        try:
            with con.cursor() as cur:
                cur.execute("SELECT set_config('search_path', $1, false)", [quote(self.schema)])
                cur.execute("SET TIME ZONE 'UTC'")
        except BaseException:
            con.close()
            raise
        return con

    def table_name(self, name: str) -> str:
        return f"{quote(self.schema)}.{quote(name)}"

    def _fail(self, exc: BaseException) -> PublishError:
        return PublishError(f"results schema {self.schema!r}: {error_line(exc, self.url)}")

    def _transaction(self, work: Any) -> Any:
        """Run ``work(cursor)`` in one transaction; commit on success, roll back on any error."""
        import adbc_driver_manager

        con = self.connect()
        try:
            with con.cursor() as cur:
                out = work(cur)
            con.commit()
            return out
        except adbc_driver_manager.Error as exc:
            _rollback(con)
            raise self._fail(exc) from None
        except BaseException:
            _rollback(con)
            raise
        finally:
            con.close()

    def ensure_schema(self) -> None:
        def work(cur: Any) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [f"scoring-ddl:{self.schema}"])
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
            for spec in all_tables(self.cfg.table):
                for name, statement in create_sql(self.schema, spec):
                    # Only missing objects get DDL: CREATE INDEX IF NOT EXISTS would still lock the table.
                    cur.execute("SELECT to_regclass($1) IS NULL", [f"{quote(self.schema)}.{quote(name)}"])
                    if cur.fetchone()[0]:
                        cur.execute(statement)
            from scoring.storage.results.views import POSTGRES, view_statements

            cur.execute("SELECT to_regclass($1) IS NOT NULL", [self.table_name("drift")])
            for statement in view_statements(POSTGRES, self.table_name, bool(cur.fetchone()[0])):
                cur.execute(statement)  # the report views over the tables above

        self._transaction(work)

    def _ingest(self, cur: Any, spec: TableSpec, batches: Iterator[pa.RecordBatch]) -> int:
        schema = arrow_schema(spec)
        first = next(batches, None)
        if first is None:
            return 0
        reader = pa.RecordBatchReader.from_batches(schema, _chain(first, batches))
        return int(cur.adbc_ingest(spec.name, reader, mode="append", db_schema_name=self.schema) or 0)

    def start_run(self, run: RunRecord) -> None:
        row = pa.RecordBatch.from_pylist([dict(zip(RUN_COLUMNS, run.values(), strict=True))],
                                         schema=_text_json(arrow_schema(RUNS)))
        self._transaction(lambda cur: self._ingest(cur, RUNS, iter([_json_columns(row, RUNS)])))

    def _update_run(self, cur: Any, run: RunRecord) -> None:
        types = {c.name: c.type for c in RUNS.columns}
        sets = ", ".join(f"{quote(c)} = CAST(${i + 2} AS {TYPES[types[c]]})" for i, c in enumerate(RUN_COLUMNS[1:]))
        params = pa.RecordBatch.from_pylist([dict(zip(RUN_COLUMNS, run.values(), strict=True))],
                                            schema=_text_json(arrow_schema(RUNS)))
        cur.execute(f"UPDATE {self.table_name('runs')} SET {sets} WHERE run_id = $1", params)  # noqa: S608

    def fail_run(self, run: RunRecord) -> None:
        self._transaction(lambda cur: self._update_run(cur, run))

    def _replace(self, cur: Any, spec: TableSpec, run: RunRecord, batches: Iterator[pa.RecordBatch]) -> None:
        cur.execute(f"DELETE FROM {self.table_name(spec.name)} WHERE day = $1 AND model_name = $2",  # noqa: S608
                    [run.day, run.model_name])
        rows = self._ingest(cur, spec, batches)
        logger.debug("published %s rows into %s for %s / %s", rows, spec.name, run.day, run.model_name)

    def publish(self, run: RunRecord, prediction_files: list[Path], quarantine_files: list[Path],
                extra: dict[str, pa.Table] | None = None) -> None:
        specs = {s.name: s for s in all_tables(self.cfg.table)}
        unknown = sorted(set(extra or {}) - set(specs))
        if unknown:
            raise PublishError(f"unknown results table(s): {', '.join(unknown)}")
        for name, rows in (extra or {}).items():
            missing = [c for c in specs[name].column_names if c not in rows.column_names]
            if missing:
                raise PublishError(f"rows for results table {name!r} lack column(s): {', '.join(missing)}")
        constants = {"model_name": run.model_name, "model_version": run.model_version, "run_id": run.run_id,
                     "day": run.day, "scored_at": run.started_at}
        lock_key = f"{self.schema}.{self.cfg.table}|{run.day.isoformat()}|{run.model_name}"

        def work(cur: Any) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [lock_key])
            pred = specs[self.cfg.table]
            self._replace(cur, pred, run, _file_batches(prediction_files, arrow_schema(pred), constants))
            self._replace(cur, QUARANTINE, run,
                          _file_batches(quarantine_files, arrow_schema(QUARANTINE), constants))
            for name, rows in (extra or {}).items():
                schema = arrow_schema(specs[name])
                table = pa.table([conform(rows.column(f.name), f.type) for f in schema], schema=schema)
                self._replace(cur, specs[name], run, iter(table.to_batches()))
            self._update_run(cur, run)
            before_commit(run)

        self._transaction(work)

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        import adbc_driver_manager

        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(sql, params or None)
                return _plain(cur.fetch_arrow_table())
        except adbc_driver_manager.Error as exc:
            raise self._fail(exc) from None
        finally:
            _rollback(con)
            con.close()


def _rollback(con: Any) -> None:
    """Roll back, ignoring a connection that is already gone (the server then rolled back itself)."""
    with contextlib.suppress(Exception):
        con.rollback()


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _text_json(schema: pa.Schema) -> pa.Schema:
    """``schema`` with JSON columns as plain strings (for bound parameters and from_pylist)."""
    return pa.schema([f.with_type(pa.string()) if isinstance(f.type, pa.JsonType) else f for f in schema])


def _json_columns(batch: pa.RecordBatch, spec: TableSpec) -> pa.RecordBatch:
    schema = arrow_schema(spec)
    return pa.RecordBatch.from_arrays([conform(batch.column(f.name), f.type) for f in schema], schema=schema)


def before_commit(run: RunRecord) -> None:
    """Hook called inside the publish transaction just before COMMIT (tests inject failures here)."""
