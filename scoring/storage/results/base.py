"""The results-store interface and the run ledger record."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from scoring.config import ResultsConfig

from scoring.errors import Superseded
from scoring.storage.results.tables import RUNS

RUN_COLUMNS = tuple(RUNS.column_names)
logger = logging.getLogger(__name__)

# Inside a publish transaction: a successful run of the same (day, model) that started later (run id breaks
# ties). Found -> this run is superseded and publishes nothing. $1 day, $2 model, $3 run id, $4 started_at.
NEWER_RUN_SQL = ("SELECT run_id, started_at FROM {runs} WHERE day = $1 AND model_name = $2 AND status = 'success' "
                 "AND run_id <> $3 AND (started_at > $4 OR (started_at = $4 AND run_id > $3)) "
                 "ORDER BY started_at DESC LIMIT 1")


def superseded_error(run: RunRecord, newer_id: str, newer_started: dt.datetime) -> Superseded:
    """The one line a superseded run ends with, naming the newer run."""
    return Superseded(f"superseded by run {newer_id} (started {newer_started:%Y-%m-%d %H:%M:%S}Z), which "
                      f"published newer data for {run.day} / {run.model_name}; this run (started "
                      f"{run.started_at:%Y-%m-%d %H:%M:%S}Z) published nothing")


@dataclass
class RunRecord:
    """One row of the run ledger."""

    run_id: str
    day: dt.date
    model_name: str
    model_version: int
    started_at: dt.datetime
    status: str = "running"
    rows_in: int = 0
    rows_rejected: int = 0
    rows_scored: int = 0
    finished_at: dt.datetime | None = None
    duration_s: float | None = None
    error: str | None = None
    trigger: str = "cli"
    details: dict[str, Any] = field(default_factory=dict)
    rows_staged: int | None = None  # scored into staging; rows_scored is what was published (0 when nothing)
    host: str = field(default_factory=lambda: socket.gethostname())
    pid: int = field(default_factory=os.getpid)
    heartbeat_at: dt.datetime | None = None

    def finish(self, status: str, error: str | None = None) -> None:
        self.status = status
        self.error = error
        self.finished_at = dt.datetime.now(dt.UTC)
        self.duration_s = (self.finished_at - self.started_at).total_seconds()

    def values(self) -> list[Any]:
        import json

        return [json.dumps(self.details, default=str) if c == "details" else getattr(self, c) for c in RUN_COLUMNS]


class ResultsStore(ABC):
    """Where runs publish. Implementations replace a (day, model) partition in one transaction."""

    def __init__(self, cfg: ResultsConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the tables if they do not exist and migrate tables created by earlier versions in place
        (missing columns added, NOT NULL dropped where the spec allows NULL); no DDL when all is current."""

    @abstractmethod
    def start_run(self, run: RunRecord) -> None:
        """Insert the ledger row of a starting run."""

    @abstractmethod
    def fail_run(self, run: RunRecord) -> None:
        """Record a failed run; predictions are not touched."""

    @abstractmethod
    def publish(self, run: RunRecord, prediction_files: list[Path], quarantine_files: list[Path],
                extra: dict[str, pa.Table] | None = None) -> None:
        """In one transaction: replace the run's (day, model) partition of predictions, quarantine and each
        extra table (name -> rows with that table's columns) with the staged rows, and mark the run
        successful in the ledger. A failure before COMMIT leaves every table as it was."""

    @abstractmethod
    def replace_days(self, model: str, start: dt.date, end: dt.date, tables: dict[str, pa.Table], *,
                     ledger_trigger: str | None = None) -> None:
        """In one transaction: delete the rows of ``model`` with ``start <= day <= end`` from each named table
        and insert the given rows (the table's columns, by name). Used by tables written outside a run
        (``outcomes``, ``label_coverage``): a recomputation replaces the window, never appends to it.
        The run ledger (``runs``) may be named only with ``ledger_trigger``: then only its rows of that
        ``trigger`` are replaced (the outcomes' warning/alert rows), never a run's.

        Raises:
            PublishError: the store cannot be written (names it); nothing changed.
            ValueError: ``runs`` named without ``ledger_trigger``.
        """

    @staticmethod
    def _replace_filter(name: str, ledger_trigger: str | None) -> tuple[str, list[Any]]:
        """The extra condition (``AND ...`` on parameter ``$4``) of ``replace_days``'s delete of table ``name``."""
        if name != "runs":
            return "", []
        if not ledger_trigger:
            raise ValueError("replace_days replaces rows of the run ledger only with ledger_trigger")
        return ' AND "trigger" = $4', [ledger_trigger]

    def record_failure(self, run: RunRecord, quarantine_files: list[Path]) -> None:
        """Record a run that failed a data quality rule, keeping its quarantine rows so users can see which
        rows and rules failed: the rows are appended (tagged with the run id) and the ledger row updated in
        one transaction; predictions and the other tables are not touched. The next successful run of the
        day replaces the day's quarantine partition. Stores without an implementation record the failure
        only."""
        self.fail_run(run)

    def heartbeat(self, run: RunRecord) -> None:  # noqa: B027 - optional: stores without one rely on host/pid
        """Refresh the run's ``heartbeat_at`` if the store is free right now; never waits, never raises."""

    def _set_status(self, updates: list[tuple[str, str, str]]) -> None:
        """Set (status, error) of ``running`` rows by run id: ``(run_id, status, error)`` triples."""
        raise NotImplementedError

    def mark_interrupted(self, day: dt.date | None = None, model: str | None = None, by: str = "") -> list[str]:
        """Mark ``running`` attempts whose process is gone as ``interrupted`` (all, or those of one (day, model)).

        Args:
            day, model: restrict to one partition (a starting run checks its own).
            by: who noticed (a run id, or ``scoring runs``), kept in the error line.

        Returns:
            The run ids marked. Rows of live attempts are left alone.
        """
        from scoring.storage.results.liveness import attempt_alive

        sql = (f"SELECT run_id, host, pid, started_at, heartbeat_at FROM {self.table_name('runs')} "  # noqa: S608
               "WHERE status = 'running'")
        params: list[Any] = []
        if day is not None and model is not None:
            sql += " AND day = $1 AND model_name = $2"
            params = [day, model]
        rows = self.query(sql, params).to_pylist()
        dead = [r for r in rows if not attempt_alive(r["host"], r["pid"], r["started_at"], r["heartbeat_at"],
                                                     self.cfg.heartbeat_timeout_s)]
        updates = []
        for r in dead:
            last = r["heartbeat_at"] or r["started_at"]
            who = f"process {r['pid']} on {r['host']}" if r["pid"] else "its process"
            updates.append((r["run_id"], "interrupted", f"interrupted: {who} is gone (last heartbeat "
                            f"{last:%Y-%m-%d %H:%M:%S}Z); noticed by {by or 'a later run'}"))
        if updates:
            self._set_status(updates)
            logger.warning("marked %s attempt(s) interrupted: %s", len(updates), ", ".join(u[0] for u in updates))
        return [u[0] for u in updates]

    @abstractmethod
    def query(self, sql: str, params: list[Any] | None = None, *, wait_locks: bool = False) -> pa.Table:
        """Run a read query (named tables are the store's own) and return an Arrow table.

        With ``wait_locks`` (a read on the publish path) a store whose readers can be blocked (PostgreSQL:
        another session's ACCESS EXCLUSIVE lock) waits at most ``results.lock_timeout_s``, then raises
        ResultsLocked naming the sessions holding locks, as the publish itself would."""

    @abstractmethod
    def table_name(self, name: str) -> str:
        """The quoted, qualified name of one of the store's tables."""

    def runs(self, limit: int = 50, model: str | None = None) -> pa.Table:
        sql = f"SELECT * FROM {self.table_name('runs')}"  # noqa: S608 - quoted identifier
        params: list[Any] = []
        if model:
            sql += " WHERE model_name = $1"
            params.append(model)
        return self.query(sql + f" ORDER BY started_at DESC LIMIT {int(limit)}", params)

    def successful_runs(self, model: str, first: dt.date | None = None,
                        last: dt.date | None = None) -> list[dict[str, Any]]:
        """The ``success`` ledger rows of ``model`` (days ``first`` .. ``last`` inclusive when given), by day
        then publish time: a day's latest publish comes last (``details`` as stored)."""
        sql = f"SELECT * FROM {self.table_name('runs')} WHERE model_name = $1 AND status = 'success'"  # noqa: S608
        params: list[Any] = [model]
        for op, bound in ((">=", first), ("<=", last)):
            if bound is not None:
                params.append(bound)
                sql += f" AND day {op} ${len(params)}"
        return self.query(sql + " ORDER BY day, finished_at", params).to_pylist()

    def drift_counts(self, model: str, version: int, first: dt.date, before: dt.date) -> list[dict[str, Any]]:
        """Rows (day, feature, counts) of the ``drift`` table for ``model`` v``version`` published for the
        days ``first`` <= day < ``before`` that have counts. Raises when the table does not exist yet."""
        sql = (f"SELECT day, feature, counts FROM {self.table_name('drift')} "  # noqa: S608 - quoted identifier
               "WHERE model_name = $1 AND model_version = $2 AND day >= $3 AND day < $4 AND counts IS NOT NULL")
        return self.query(sql, [model, version, first, before]).to_pylist()

    def predictions(self, day: dt.date, model: str) -> pa.Table:
        sql = (f"SELECT * FROM {self.table_name(self.cfg.table)} "  # noqa: S608 - quoted identifier
               "WHERE day = $1 AND model_name = $2 ORDER BY source_key")
        return self.query(sql, [day, model])
