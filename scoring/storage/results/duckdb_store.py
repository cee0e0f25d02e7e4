"""DuckDB results store: one file, short-lived connections, one transaction per publish."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from scoring.errors import PublishError, ResultsLocked, Superseded
from scoring.sqlident import quote
from scoring.storage.duck import WRITE_MEMORY_MIB, duck_connect, out_of_memory, spill_directory
from scoring.storage.faults import fault_point
from scoring.storage.results.base import NEWER_RUN_SQL, RUN_COLUMNS, ResultsStore, RunRecord, superseded_error
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
from scoring.storage.stagefs import duck_scan

logger = logging.getLogger(__name__)

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

    lock_wait_s = 0.0  # time this store spent waiting for the file lock (ledger timings)

    def connect(self, read_only: bool = False, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting while another process holds DuckDB's lock; says so at once, naming the holder.

        Args:
            read_only: a read-only connection (shares the file with other readers, not with a writer).
            wait_s: how long to wait for the lock (default ``results.lock_timeout_s``; 0: do not wait).

        Raises:
            ResultsLocked: still locked after ``wait_s`` (names the holding process).
            PublishError: the file is not a readable DuckDB database (corrupted, another format).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        wait = self.cfg.lock_timeout_s if wait_s is None else wait_s
        started, warned = time.monotonic(), False
        while True:
            try:
                con = duck_connect(self.path, read_only=read_only and self.path.exists())
                self.lock_wait_s += time.monotonic() - started
                return con
            except duckdb.Error as exc:
                text = _first_line(exc)
                if not re.search(r"could not set lock|conflicting lock", text, re.IGNORECASE):  # not "block"
                    raise PublishError(f"cannot open results database {str(self.path)!r}: {text}") from None
                holder = lock_holder(text)
                if time.monotonic() - started >= wait:
                    self.lock_wait_s += time.monotonic() - started
                    raise ResultsLocked(f"results database {str(self.path)!r} is locked by {holder}; gave up after "
                                        f"{wait:.0f} s (results.lock_timeout_s)") from None
                if not warned:
                    logger.warning("results database %s is locked by %s; waiting up to %.0f s "
                                   "(results.lock_timeout_s)", self.path, holder, wait)
                    warned = True
                time.sleep(0.2)

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
                    _rollback(con)
                    raise
            from scoring.storage.results.views import create_duckdb_views

            create_duckdb_views(con)  # the report views over the tables above, when missing or outdated

    def start_run(self, run: RunRecord) -> None:
        marks = ", ".join(f"${i + 1}" for i in range(len(RUN_COLUMNS)))
        run.heartbeat_at = dt.datetime.now(dt.UTC)
        with self.connect() as con:
            con.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({marks})", run.values())  # noqa: S608
            self._export_runs(con)

    def heartbeat(self, run: RunRecord) -> None:
        try:
            with self.connect(wait_s=0) as con:
                run.heartbeat_at = dt.datetime.now(dt.UTC)
                con.execute("UPDATE runs SET heartbeat_at = $2 WHERE run_id = $1", [run.run_id, run.heartbeat_at])
        except Exception as exc:  # noqa: BLE001 - a heartbeat is best effort: a reader may hold the file
            logger.debug("heartbeat of %s skipped: %s", run.run_id, exc)

    def _set_status(self, updates: list[tuple[str, str, str]]) -> None:
        with self.connect() as con:
            for run_id, status, error in updates:
                con.execute("UPDATE runs SET status = $2, error = $3 WHERE run_id = $1 AND status = 'running'",
                            [run_id, status, error])
            self._export_runs(con)

    def _update_run(self, con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(RUN_COLUMNS[1:]))
        con.execute(f"UPDATE runs SET {sets} WHERE run_id = $1", run.values())  # noqa: S608 - constant columns

    def fail_run(self, run: RunRecord) -> None:
        # A run that failed on the lock must not wait for it again to say so: its row stays ``running`` and
        # the next run of the day (or ``scoring runs``) marks it interrupted.
        with self.connect(wait_s=0 if run.error and "results.lock_timeout_s" in run.error else None) as con:
            self._update_run(con, run)
            self._export_runs(con)

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
        files, qfiles = prediction_files, quarantine_files
        pred = predictions_spec(self.cfg.table)
        staged = staged_columns(prediction_files, pred.column_names)
        values = [c for c in STAGED_PREDICTION_COLUMNS if c in pred.column_names]
        names = [*values, *RUN_CONSTANTS, *(f.name for f in staged.passthrough)]
        select = ", ".join([*(quote(c) if c in staged.core else "NULL" for c in values),  # NULL: staged before
                            "$1", "$2", "$3", "$4", "$5", *(quote(f.name) for f in staged.passthrough)])
        waited = self.lock_wait_s
        with self.connect() as con:
            begun = time.monotonic()
            if staged.passthrough:
                self._add_passthrough(con, staged.passthrough)
            # Under a memory limit, so a big day's insert does not leave the process holding its buffer pool; a
            # publish that needs more (long passthrough texts) is rolled back and done again without the limit.
            con.execute(f"SET memory_limit = '{WRITE_MEMORY_MIB}MiB'")
            # The insert on one thread: DuckDB's multi-threaded insert that keeps the rows' order writes row
            # groups that the next checkpoint (at the commit or when the file is closed) then rewrites whole.
            # On one thread the insert appends complete row groups in order and the checkpoint only points to
            # them: a 2,000,000-row partition cost 1.31 CPU s to insert + 1.20 to checkpoint on 2 threads, 1.12 +
            # 0.003 on one (DuckDB 2.0; the rows keep their staged order either way, the file is 49 MB, not 74).
            con.execute("SET threads = 1")
            try:
                for attempt in (1, 2):
                    if self._publish_once(con, run, files, qfiles, select, names, pred, extra, waited, begun,
                                          attempt):
                        break
            finally:
                con.execute("RESET threads")
            fault_point("after_commit")
            self._export(con, run, [pred, QUARANTINE, *(s for s in all_tables(self.cfg.table)
                                                        if s.partitioned and s.name not in (pred.name, QUARANTINE.name))])

    def _publish_once(self, con: duckdb.DuckDBPyConnection, run: RunRecord, files: list[Path], qfiles: list[Path],
                      select: str, names: list[str], pred: Any, extra: dict[str, pa.Table] | None, waited: float,
                      begun: float, attempt: int) -> bool:
        """One publish transaction; False when it ran out of memory under ``WRITE_MEMORY_MIB`` on the first
        attempt (rolled back, limit lifted: try again)."""
        head = [run.run_id, run.day, run.model_name]
        con.execute("BEGIN TRANSACTION")
        try:
            newer = con.sql(NEWER_RUN_SQL.format(runs="runs"),  # Arrow: timestamptz without pytz
                            params=[run.day, run.model_name, run.run_id, run.started_at]).to_arrow_table().to_pylist()
            if newer:
                raise superseded_error(run, newer[0]["run_id"], newer[0]["started_at"])
            scan, bound = duck_scan(con, "staged_predictions", files, "$6") if files else ("", [])
            self._replace(con, pred, run, f"SELECT {select} FROM {scan}"  # noqa: S608
                          if files else "",
                          [run.model_name, run.model_version, run.run_id, run.day, run.started_at, *bound],
                          names)
            scan, bound = duck_scan(con, "staged_quarantine", qfiles, "$4", union=False) if qfiles else ("", [])
            columns = "$1, $2, $3, source_key, column_name, rule, value, row_json, reason"
            quarantine_sql = f"SELECT {columns} FROM {scan}" if qfiles else ""  # noqa: S608 - constants
            self._replace(con, QUARANTINE, run, quarantine_sql, [*head, *bound])
            for name, rows in (extra or {}).items():
                spec = next(s for s in all_tables(self.cfg.table) if s.name == name)
                con.register("extra_rows", rows)
                self._replace(con, spec, run, f"SELECT {', '.join(map(quote, spec.column_names))} "  # noqa: S608
                              "FROM extra_rows" if rows.num_rows else "", [])
                con.unregister("extra_rows")
            run.details.setdefault("steps", {}).update(
                publish_lock_wait_s=round(self.lock_wait_s - waited, 3),
                publish_s=round(time.monotonic() - begun, 3))
            run.finish("success")  # finished_at = the commit, so the ledger order is the publish order
            run.rows_staged = run.rows_scored
            self._update_run(con, run)
            before_commit(run)
            con.execute("COMMIT")
        except Superseded:
            _rollback(con)
            raise
        except duckdb.Error as exc:
            _rollback(con)  # the rollback's own error must not replace the cause
            if not out_of_memory(exc) or attempt > 1:
                raise PublishError(f"publishing to results database {str(self.path)!r} failed: "
                                   f"{_first_line(exc)}") from None
            logger.info("publish needs more than %s MiB in DuckDB; publishing again without the limit",
                        WRITE_MEMORY_MIB)
            con.execute("RESET memory_limit")
            return False
        except BaseException:
            _rollback(con)
            raise
        return True

    def replace_days(self, model: str, start: dt.date, end: dt.date, tables: dict[str, pa.Table], *,
                     ledger_trigger: str | None = None) -> None:
        specs = {s.name: s for s in all_tables(self.cfg.table)}
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for name, rows in tables.items():
                    spec = specs[name]
                    only, bound = self._replace_filter(name, ledger_trigger)
                    con.execute(f"DELETE FROM {quote(name)} WHERE model_name = $1 "  # noqa: S608 - quoted
                                f"AND day BETWEEN $2 AND $3{only}", [model, start, end, *bound])
                    if rows.num_rows:
                        con.register("replace_rows", rows)
                        cols = ", ".join(map(quote, spec.column_names))
                        con.execute(f"INSERT INTO {quote(name)} ({cols}) SELECT {cols} FROM replace_rows")  # noqa: S608
                        con.unregister("replace_rows")
                con.execute("COMMIT")
            except duckdb.Error as exc:
                _rollback(con)
                raise PublishError(f"writing {', '.join(tables)} to {str(self.path)!r} failed: "
                                   f"{_first_line(exc)}") from None
            except BaseException:
                _rollback(con)
                raise
            self._export_days(con, model, start, end, list(tables))

    def _export_days(self, con: duckdb.DuckDBPyConnection, model: str, start: dt.date, end: dt.date,
                     tables: list[str]) -> None:
        """The reader export of what ``replace_days`` wrote (after COMMIT); a failure is logged, not raised:
        the results hold the rows, and the next computation of the window exports them again."""
        if not self.cfg.reader_export:
            return
        from scoring.storage.results.export import export_days

        try:
            export_days(con, self.export_dir, tables, model, start, end)
        except (OSError, duckdb.Error) as exc:
            logger.warning("reader export of %s for %s %s..%s failed: %s; recompute the window to export it",
                           ", ".join(tables), model, start, end, _first_line(exc))

    def record_failure(self, run: RunRecord, quarantine_files: list[Path]) -> None:
        qfiles = quarantine_files
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                # Bounded quarantine: of a (day, model), keep the published run's rows and this attempt's only.
                con.execute(f"DELETE FROM {quote(QUARANTINE.name)} WHERE day = $1 AND model_name = $2 "  # noqa: S608
                            "AND run_id NOT IN (SELECT run_id FROM runs WHERE day = $1 AND model_name = $2 "
                            "AND status = 'success')", [run.day, run.model_name])
                if qfiles:
                    scan, bound = duck_scan(con, "staged_quarantine", qfiles, "$4", union=False)
                    con.execute(f"INSERT INTO {quote(QUARANTINE.name)} "  # noqa: S608 - quoted constant
                                f"({', '.join(map(quote, QUARANTINE.column_names))}) "
                                "SELECT $1, $2, $3, source_key, column_name, rule, value, row_json, reason "
                                f"FROM {scan}", [run.run_id, run.day, run.model_name, *bound])
                self._update_run(con, run)
                con.execute("COMMIT")
            except duckdb.Error as exc:
                _rollback(con)
                raise PublishError(f"recording run {run.run_id} in {str(self.path)!r} failed: "
                                   f"{_first_line(exc)}") from None
            except BaseException:
                _rollback(con)
                raise
            self._export(con, run, [QUARANTINE])

    def _export_runs(self, con: duckdb.DuckDBPyConnection) -> None:
        """Refresh the exported ledger (``runs``), best effort: a full or read-only export disk must not stop
        a run from starting or a failure from being recorded (the results file holds the ledger; the next
        refresh rewrites the export, and a publish's own export failure is reported by ``_export``)."""
        if self.cfg.reader_export:
            from scoring.storage.results.export import export_runs

            try:
                export_runs(con, self.export_dir)
            except (OSError, duckdb.Error) as exc:
                logger.error("reader export of the runs ledger failed (the results file is up to date; the next "
                             "ledger change rewrites it): %s", _first_line(exc))

    def _export(self, con: duckdb.DuckDBPyConnection, run: RunRecord, specs: list[TableSpec]) -> None:
        """Refresh the reader export of the run's partition and repair any other partition whose export
        diverged (after COMMIT). A failure is recorded in the run's ledger row (``details.export``:
        ``published, export failed: ...``) and logged; ``export_failure`` then tells the caller, and the next
        publish, ``scoring runs`` or ``scoring export --repair`` re-exports it."""
        if not self.cfg.reader_export:
            return
        from scoring.storage.results.export import export_partition

        names = [s.name for s in specs]
        record = bool(specs) and specs[0].name == self.cfg.table
        try:
            try:
                fault_point("before_export")
                export_partition(con, self.export_dir, names, run.day, run.model_name, record)
            except duckdb.Error as exc:  # over the publish's memory limit: once more without it
                if not out_of_memory(exc):
                    raise
                con.execute("RESET memory_limit")
                export_partition(con, self.export_dir, names, run.day, run.model_name, record)
            if record:
                self.repair_export(con)
        except (OSError, duckdb.Error) as exc:
            line = f"published, export failed: {_first_line(exc)}"
            logger.error("reader export of %s / %s failed (the results file is up to date): %s", run.day,
                         run.model_name, _first_line(exc))
            try:
                con.execute("UPDATE runs SET details = json_merge_patch(coalesce(details, '{}'), "
                            "json_object('export', $1)) WHERE run_id = $2", [line, run.run_id])
            except duckdb.Error as inner:
                logger.error("could not record the export failure of %s: %s", run.run_id, _first_line(inner))

    def repair_export(self, con: duckdb.DuckDBPyConnection | None = None, dry_run: bool = False,
                      wait_s: float | None = None) -> list[tuple[Any, str]]:
        """Re-export every (day, model) partition whose export does not hold the run the results hold, and
        the exported ledger (``runs``).

        Runs on the writer's connection (``con``, or a new one: it excludes a concurrent publish, so a repair
        never writes an older partition over a newer export). Returns the partitions found (repaired unless
        ``dry_run``). Raises OSError or duckdb.Error when an export cannot be written.
        """
        from scoring.storage.results.export import diverged, export_partition

        if not self.cfg.reader_export or not self.path.exists():
            return []
        if con is None:
            with self.connect(read_only=dry_run, wait_s=wait_s) as own:
                return self.repair_export(own, dry_run)
        names = [self.cfg.table, QUARANTINE.name, *(s.name for s in all_tables(self.cfg.table)
                                                    if s.partitioned and s.name not in (self.cfg.table, QUARANTINE.name))]
        existing = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if self.cfg.table not in existing:
            return []
        found = diverged(con, self.export_dir, self.cfg.table)
        if dry_run:
            return found
        for day, model in found:
            export_partition(con, self.export_dir, [n for n in names if n in existing], day, model, record=True)
        from scoring.storage.results.export import export_runs

        export_runs(con, self.export_dir)  # the exported ledger too: a full disk may have left it behind
        if found:
            logger.warning("reader export repaired: %d partition(s) re-exported (%s)", len(found),
                           ", ".join(f"{d}/{m}" for d, m in found[:5]))
        return found

    def export_failure(self, run_id: str) -> str | None:
        """``published, export failed: ...`` when the run's reader export failed and is not repaired since."""
        if not self.cfg.reader_export or not self.path.exists():
            return None
        with self.connect(read_only=True) as con:
            row = con.execute("SELECT json_extract_string(details, '$.export'), day, model_name FROM runs "
                              "WHERE run_id = $1", [run_id]).fetchone()
            if row is None or row[0] is None:
                return None
            from scoring.storage.results.export import diverged

            return row[0] if (row[1], row[2]) in diverged(con, self.export_dir, self.cfg.table) else None

    @property
    def export_dir(self) -> Path:
        """Where the reader export lives: ``results.export_dir``, else ``<results file>_export/``."""
        return self.cfg.export_dir or self.path.with_name(self.path.stem + "_export")

    def removed_keys(self, before_sql: str, params: list[Any], prediction_files: list[Path],
                     quarantine_files: list[Path]) -> dict[str, Any] | None:
        """``replaced.removed_in`` on a read-only connection to the results file (local staged files): what
        the predictions ``before_sql`` selects lose to the staged ones; None when it selects no row.

        Raises:
            PublishError: as ``query``.
        """
        from scoring.storage.results.replaced import REMOVED_MEMORY_MIB, removed_in

        if not self.path.exists():
            raise PublishError(f"results database {str(self.path)!r} does not exist yet: run a day first")
        with self.connect(read_only=True) as con:
            try:
                if not con.execute(f"SELECT EXISTS ({before_sql})", params).fetchall()[0][0]:  # noqa: S608
                    return None
                # DuckDB spills the join past this limit into a private folder (as ``duck_connect``'s)
                con.execute(f"SET memory_limit = '{REMOVED_MEMORY_MIB}MiB'")
                con.execute("SET temp_directory = '" + spill_directory().replace("'", "''") + "'")
                return removed_in(con, before_sql, params, prediction_files, quarantine_files)
            except (duckdb.IOException, duckdb.InternalException, duckdb.SerializationException) as exc:
                raise PublishError(f"results database {str(self.path)!r} is unreadable: {_first_line(exc)}") from None

    def query(self, sql: str, params: list[Any] | None = None, *, wait_locks: bool = False) -> pa.Table:
        # wait_locks: a DuckDB reader never waits for a writer's lock (one file, MVCC), nothing to bound.
        if not self.path.exists():
            raise PublishError(f"results database {str(self.path)!r} does not exist yet: run a day first")
        with self.connect(read_only=True) as con:
            try:
                return con.sql(sql, params=params or None).to_arrow_table()
            except (duckdb.IOException, duckdb.InternalException, duckdb.SerializationException) as exc:
                raise PublishError(f"results database {str(self.path)!r} is unreadable: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def lock_holder(message: str) -> str:
    """The process DuckDB names in a lock conflict (``python3 (PID 123)``), else ``another process``."""
    found = re.search(r"held in (.+?) \(PID (\d+)\)", message)
    return f"{found.group(1)} (PID {found.group(2)})" if found else "another process"


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back when a transaction is still open; never raises (a failed COMMIT already ended it)."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


def before_commit(run: RunRecord) -> None:
    """Hook called inside the publish transaction just before COMMIT (tests inject failures here)."""
    fault_point("before_commit")
