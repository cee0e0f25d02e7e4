"""PostgreSQL results store: tables in a configured schema, each publish one transaction.

A publish takes a transaction-scoped advisory lock on (schema, table, day, model), deletes the
partition's rows and bulk-loads the staged Parquet files straight into the tables with ADBC ingest
(binary ``COPY``), then updates the run row and commits. Publishes of the same (day, model) serialize on
the lock; other days take other locks and touch other rows, so they run side by side. A crash or error
before COMMIT leaves every table as it was (the server rolls back a dropped connection).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from scoring.errors import PublishError, ResultsLocked
from scoring.sqlident import quote
from scoring.storage.faults import fault_point
from scoring.storage.pgconn import connect, error_line, resolve_url
from scoring.storage.results.base import NEWER_RUN_SQL, RUN_COLUMNS, ResultsStore, RunRecord, superseded_error
from scoring.storage.results.evolution import (
    ExistingColumn,
    missing_passthrough,
    postgres_arrow_type,
    postgres_column_arrow,
    sql_type,
    staged_columns,
    table_changes,
)
from scoring.storage.results.tables import QUARANTINE, RUNS, TableSpec, all_tables
from scoring.storage.stagefs import as_location

logger = logging.getLogger(__name__)
# A schema change waits at most this long per attempt: readers queued behind a waiting ALTER TABLE wait no longer.
DDL_LOCK_S = 2.0

TYPES = {"string": "text", "float": "double precision", "int8": "smallint", "int32": "integer",
         "int64": "bigint", "date": "date", "timestamptz": "timestamptz", "bool": "boolean", "json": "jsonb"}
ARROW = {"string": pa.string(), "float": pa.float64(), "int8": pa.int16(), "int32": pa.int32(),
         "int64": pa.int64(), "date": pa.date32(), "timestamptz": pa.timestamp("us", tz="UTC"),
         "bool": pa.bool_(), "json": pa.json_()}
READ_BATCH = 131_072
# One catalog read for ensure_schema and publish: the schema's tables with their columns (pg_catalog, for
# format_type's exact types), its indexes, and its views with their fingerprint comments.
CATALOG_SQL = """
    SELECT c.relname, c.relkind::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
           obj_description(c.oid, 'pg_class')
    FROM pg_namespace n
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'i')
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
    WHERE n.nspname = $1"""


class Catalog:
    """What a results schema holds, from one ``CATALOG_SQL`` read."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.schema_exists = bool(rows)
        self.relations: set[str] = set()
        self.tables: dict[str, dict[str, ExistingColumn]] = {}
        self.view_comments: dict[str, str | None] = {}
        for name, kind, column, type_, not_null, comment in rows:
            if name is None:
                continue
            self.relations.add(name)
            if kind == "v":
                self.view_comments[name] = comment
            elif kind in ("r", "p"):
                columns = self.tables.setdefault(name, {})
                if column is not None:
                    columns[column] = ExistingColumn(type_, not not_null)


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


def _file_batches(files: list[Path], schema: pa.Schema, constants: dict[str, Any],
                  sort_by: str | None = None) -> Iterator[pa.RecordBatch]:
    """The staged Parquet rows, batch by batch, completed with the run's constant columns (and NULL for a
    column the file lacks: predicted_class/probabilities staged before the model contract, a passthrough
    column).

    ``sort_by``: each file (one chunk, sized to the memory budget) is read whole and its rows sent in that
    column's order. The predictions' primary key ends with ``source_key``: keys in order insert next to each
    other in the B-tree instead of at random pages (400,000 random text keys: 2.8 s in source order, 1.0-1.1 s
    sorted, on PostgreSQL 16 under load 4.4), and the index insert is most of the publish transaction."""
    for path in files:
        parquet = as_location(path).parquet()
        if sort_by is not None:
            table = parquet.read()
            if sort_by in table.column_names and not _in_order(table.column(sort_by)):
                table = table.sort_by(sort_by)
            batches = iter(table.to_batches(max_chunksize=READ_BATCH))
        else:
            batches = parquet.iter_batches(batch_size=READ_BATCH)
        for batch in batches:
            n = batch.num_rows
            arrays = [conform(batch.column(f.name), f.type) if f.name in batch.schema.names
                      else pa.repeat(pa.scalar(constants.get(f.name), f.type), n) for f in schema]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _in_order(column: pa.ChunkedArray) -> bool:
    """Whether the column's values are already ascending (a chunk of sequential keys): then no sort is needed."""
    values = column.combine_chunks()
    if len(values) < 2:
        return True
    return bool(pc.all(pc.greater_equal(values.slice(1), values.slice(0, len(values) - 1))).as_py() is not False)


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

    def _transaction(self, work: Any, locks: bool = False, ddl: bool = False) -> Any:
        """Run ``work(cursor)`` in one transaction; commit on success, roll back on any error.

        With ``locks`` (publish) the transaction waits at most ``results.lock_timeout_s`` for any lock; a
        timeout raises ResultsLocked naming the sessions holding locks in the schema. With ``ddl`` (schema
        changes) each attempt waits at most DDL_LOCK_S: a waiting ``ALTER TABLE`` queues every reader behind
        it, so it gives up quickly, rolls back (letting readers through) and retries with backoff until
        ``results.lock_timeout_s`` is spent."""
        import adbc_driver_manager

        budget = self.cfg.lock_timeout_s
        started, pause = time.monotonic(), 0.25
        while True:
            elapsed = time.monotonic() - started
            wait_s = min(DDL_LOCK_S, max(budget - elapsed, 0.001)) if ddl else budget
            con = self.connect()
            try:
                with con.cursor() as cur:
                    if locks or ddl:
                        cur.execute("SELECT set_config('lock_timeout', $1, true)", [f"{max(int(wait_s * 1000), 1)}ms"])
                    out = work(cur)
                con.commit()
                return out
            except adbc_driver_manager.Error as exc:
                _rollback(con)
                if getattr(exc, "sqlstate", None) == "55P03" or "lock timeout" in str(exc):
                    if ddl and time.monotonic() - started + pause < budget:
                        logger.info("results schema %s: a schema change waits for a lock; retrying in %.2f s",
                                    self.schema, pause)
                        time.sleep(pause)
                        pause = min(pause * 2, 5.0)
                        continue
                    raise ResultsLocked(f"results schema {self.schema!r}: gave up waiting "
                                        f"{budget:.0f} s (results.lock_timeout_s) for a lock held by "
                                        f"{self._blockers()}") from None
                raise self._fail(exc) from None
            except BaseException:
                _rollback(con)
                raise
            finally:
                con.close()

    def _catalog(self, cur: Any) -> Catalog:
        cur.execute(CATALOG_SQL, [self.schema])
        return Catalog(cur.fetchall())

    def ensure_schema(self) -> None:
        """Create the schema, missing tables and indexes, migrate tables of earlier versions in place (add
        the columns they lack, drop NOT NULL where the spec allows NULL) and recreate outdated views, in one
        transaction. One catalog read; no DDL (so no lock that would block readers) when all is current."""
        from scoring.storage.results.views import POSTGRES, view_statements

        def work(cur: Any) -> int:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [f"scoring-ddl:{self.schema}"])
            found = self._catalog(cur)
            statements = [] if found.schema_exists else [f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}"]
            for spec in all_tables(self.cfg.table):
                # Only missing objects get DDL: CREATE INDEX IF NOT EXISTS would still lock the table.
                statements += [sql for name, sql in create_sql(self.schema, spec) if name not in found.relations]
                if spec.name in found.tables:
                    statements += self._migration(spec, found.tables[spec.name])
            has_drift = "drift" in found.tables or "drift" not in found.relations
            statements += view_statements(POSTGRES, self.table_name, has_drift, found.view_comments)
            for statement in statements:
                cur.execute(statement)
            return len(statements)

        ran = self._transaction(work, ddl=True)
        logger.debug("results schema %s: %s DDL statement(s)", self.schema, ran)

    def _blockers(self) -> str:
        """The other sessions holding locks on the schema's tables or an advisory lock, as one phrase."""
        sql = ("SELECT DISTINCT a.pid, a.usename, a.application_name, a.state, "
               "EXTRACT(EPOCH FROM now() - coalesce(a.xact_start, a.backend_start))::int AS secs, left(a.query, 60) AS q "
               "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
               "LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_namespace n ON n.oid = c.relnamespace "
               "WHERE l.granted AND a.pid <> pg_backend_pid() AND (n.nspname = $1 OR l.locktype = 'advisory') "
               "ORDER BY 1 LIMIT 3")
        try:
            rows = self.query(sql, [self.schema]).to_pylist()
        except Exception:  # noqa: BLE001 - naming the blocker is a courtesy; the timeout is the error
            return "another session"
        return "; ".join(f"session pid {r['pid']} ({r['usename']}, {r['application_name'] or 'no application'}, "
                         f"{r['state']} for {r['secs']} s: {' '.join((r['q'] or '').split())!r})"
                         for r in rows) or "another session"

    def _migration(self, spec: TableSpec, existing: dict[str, ExistingColumn]) -> list[str]:
        """ALTER TABLE statements bringing a table created by an earlier version up to its spec."""
        changes = table_changes(spec, existing)
        if not changes:
            return []
        logger.info("migrating results table %s.%s: adding %s, dropping NOT NULL on %s", self.schema, spec.name,
                    [c.name for c in changes.add] or "nothing", list(changes.drop_not_null) or "nothing")
        actions = [f"ADD COLUMN IF NOT EXISTS {quote(c.name)} {TYPES[c.type]}" for c in changes.add]
        actions += [f"ALTER COLUMN {quote(c)} DROP NOT NULL" for c in changes.drop_not_null]
        return [f"ALTER TABLE {self.table_name(spec.name)} {', '.join(actions)}"]

    def _passthrough_schema(self, fields: tuple[pa.Field, ...]) -> list[pa.Field]:
        """Add the passthrough columns the predictions table lacks, in a short transaction of its own before
        the publish (so readers are not blocked for the whole load); return the Arrow fields to COPY them as.

        Raises:
            PublishError: a passthrough column whose type conflicts with the table's column of that name.
        """
        table = self.cfg.table

        def work(cur: Any) -> list[pa.Field]:
            existing = self._catalog(cur).tables.get(table, {})
            missing = missing_passthrough(table, fields, existing)
            if missing:
                cur.execute(f"ALTER TABLE {self.table_name(table)} " + ", ".join(
                    f"ADD COLUMN IF NOT EXISTS {quote(f.name)} {sql_type(f.type, 'postgres')}" for f in missing))
                logger.info("added passthrough column(s) %s to %s.%s", [f.name for f in missing], self.schema, table)
            lowered = {k.lower(): v for k, v in existing.items()}
            return [pa.field(f.name, postgres_column_arrow(lowered[f.name.lower()].sql_type, f.type)
                             if f.name.lower() in lowered else postgres_arrow_type(f.type)) for f in fields]

        return self._transaction(work, ddl=True)

    def _ingest(self, cur: Any, spec: TableSpec, batches: Iterator[pa.RecordBatch]) -> int:
        first = next(batches, None)
        if first is None:
            return 0
        # The batches' own schema: the spec's columns plus, for predictions, any passthrough columns.
        reader = pa.RecordBatchReader.from_batches(first.schema, _chain(first, batches))
        return int(cur.adbc_ingest(spec.name, reader, mode="append", db_schema_name=self.schema) or 0)

    def heartbeat(self, run: RunRecord) -> None:
        try:
            run.heartbeat_at = dt.datetime.now(dt.UTC)
            self._transaction(lambda cur: cur.execute(
                f"UPDATE {self.table_name('runs')} SET heartbeat_at = $2 WHERE run_id = $1",  # noqa: S608
                [run.run_id, run.heartbeat_at]))
        except Exception as exc:  # noqa: BLE001 - best effort
            logger.debug("heartbeat of %s skipped: %s", run.run_id, exc)

    def _set_status(self, updates: list[tuple[str, str, str]]) -> None:
        def work(cur: Any) -> None:
            for run_id, status, error in updates:
                cur.execute(f"UPDATE {self.table_name('runs')} SET status = $2, error = $3 "  # noqa: S608
                            "WHERE run_id = $1 AND status = 'running'", [run_id, status, error])

        self._transaction(work)

    def start_run(self, run: RunRecord) -> None:
        run.heartbeat_at = dt.datetime.now(dt.UTC)
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

    def record_failure(self, run: RunRecord, quarantine_files: list[Path]) -> None:
        constants = {"model_name": run.model_name, "model_version": run.model_version, "run_id": run.run_id,
                     "day": run.day, "scored_at": run.started_at}
        quarantine = self.table_name(QUARANTINE.name)

        def work(cur: Any) -> None:
            # Bounded quarantine, as on DuckDB: of a (day, model), keep the published run's rows and this
            # attempt's only.
            cur.execute(f"DELETE FROM {quarantine} WHERE day = $1 AND model_name = $2 AND run_id NOT IN "  # noqa: S608
                        f"(SELECT run_id FROM {self.table_name('runs')} WHERE day = $1 AND model_name = $2 "
                        "AND status = 'success')", [run.day, run.model_name])
            self._ingest(cur, QUARANTINE, _file_batches(quarantine_files, arrow_schema(QUARANTINE), constants))
            self._update_run(cur, run)

        self._transaction(work)

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
        pred = specs[self.cfg.table]
        staged = staged_columns(prediction_files, pred.column_names)
        pred_schema = arrow_schema(pred)
        if staged.passthrough:
            pred_schema = pa.schema([*pred_schema, *self._passthrough_schema(staged.passthrough)])
        lock_key = f"{self.schema}.{self.cfg.table}|{run.day.isoformat()}|{run.model_name}"

        def work(cur: Any) -> None:
            begun = time.monotonic()
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [lock_key])
            waited = time.monotonic() - begun
            cur.execute(NEWER_RUN_SQL.format(runs=self.table_name("runs")),
                        [run.day, run.model_name, run.run_id, run.started_at])
            newer = cur.fetchone()
            if newer:
                raise superseded_error(run, newer[0], newer[1])
            self._replace(cur, pred, run, _file_batches(prediction_files, pred_schema, constants, "source_key"))
            self._replace(cur, QUARANTINE, run,
                          _file_batches(quarantine_files, arrow_schema(QUARANTINE), constants))
            for name, rows in (extra or {}).items():
                schema = arrow_schema(specs[name])
                table = pa.table([conform(rows.column(f.name), f.type) for f in schema], schema=schema)
                self._replace(cur, specs[name], run, iter(table.to_batches()))
            run.details.setdefault("steps", {}).update(publish_lock_wait_s=round(waited, 3),
                                                       publish_s=round(time.monotonic() - begun, 3))
            run.finish("success")  # finished_at = the commit, so the ledger order is the publish order
            run.rows_staged = run.rows_scored
            self._update_run(cur, run)
            before_commit(run)

        self._transaction(work, locks=True)
        fault_point("after_commit")

    def replace_days(self, model: str, start: dt.date, end: dt.date, tables: dict[str, pa.Table], *,
                     ledger_trigger: str | None = None) -> None:
        specs = {s.name: s for s in all_tables(self.cfg.table)}

        def work(cur: Any) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                        [f"{self.schema}|replace_days|{model}"])
            for name, rows in tables.items():
                only, bound = self._replace_filter(name, ledger_trigger)
                cur.execute(f"DELETE FROM {self.table_name(name)} WHERE model_name = $1 "  # noqa: S608
                            f"AND day BETWEEN $2 AND $3{only}", [model, start, end, *bound])
                schema = arrow_schema(specs[name])
                table = pa.table([conform(rows.column(f.name), f.type) for f in schema], schema=schema)
                self._ingest(cur, specs[name], iter(table.to_batches()))

        self._transaction(work, locks=True)

    def query(self, sql: str, params: list[Any] | None = None, *, wait_locks: bool = False) -> pa.Table:
        import adbc_driver_manager

        if wait_locks:
            def work(cur: Any) -> pa.Table:
                cur.execute(sql, params or None)
                return _plain(cur.fetch_arrow_table())

            return self._transaction(work, locks=True)
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
    fault_point("before_commit")
