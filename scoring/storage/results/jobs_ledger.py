"""The jobs ledger and the job partitions of the results store (tables ``jobs``, ``job_predictions``,
``job_quarantine``; declared in ``tables.py``, created by ``ensure_schema``).

A job's state moves ``queued -> running -> succeeded | failed``, or ``queued -> cancelled`` (a running job
asked to stop ends ``cancelled`` at its next chunk). A running job whose worker process is gone (killed) ends
``interrupted`` as soon as someone looks (``mark_interrupted``: ``jobs status``, ``jobs work``), or
``cancelled`` when ``jobs cancel`` finds it so; a running worker refreshes ``heartbeat_at`` at every chunk. Every transition is one conditional UPDATE, so two
workers never take the same job: DuckDB has a single writer, and the UPDATE only matches a row still in
the expected state. A job's publish replaces its partition (``job_id``) of ``job_predictions`` and
``job_quarantine`` and marks it succeeded in one transaction, so a retried job never duplicates its rows.

Jobs need a DuckDB results store for now (``results.kind: duckdb``); a PostgreSQL one is refused in one line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import duckdb

from scoring.errors import ConfigError, PublishError, ScoringError
from scoring.sqlident import quote
from scoring.storage.results.base import ResultsStore
from scoring.storage.results.tables import (
    JOB_QUARANTINE,
    JOBS,
    STAGED_PREDICTION_COLUMNS,
    job_predictions_spec,
)

logger = logging.getLogger(__name__)

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
TERMINAL = ("succeeded", "failed", "cancelled", "interrupted")
JOB_COLUMNS = tuple(JOBS.column_names)


class JobCancelled(ScoringError):
    """The job was cancelled while it ran; nothing was published."""


class JobLedger:
    """Reads and moves job rows of one results store (DuckDB)."""

    def __init__(self, results: ResultsStore) -> None:
        if results.cfg.kind != "duckdb":
            raise ConfigError("on-demand jobs need a DuckDB results store (results.kind: duckdb); "
                              "PostgreSQL results are not supported for jobs yet")
        self.results = results

    def _connect(self, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
        return self.results.connect(wait_s=wait_s)  # type: ignore[attr-defined]

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = con.sql(sql, params=params).to_arrow_table().to_pylist()
        for row in rows:
            row["spec"] = json.loads(row["spec"]) if isinstance(row.get("spec"), str) else row.get("spec")
            row["details"] = json.loads(row["details"]) if isinstance(row.get("details"), str) else row.get("details")
        return rows

    def add(self, job_id: str, engine: str, model_name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Insert a queued job; returns its row."""
        row = dict.fromkeys(JOB_COLUMNS)
        row.update(job_id=job_id, state="queued", engine=engine, model_name=model_name,
                   spec=json.dumps(spec, default=str), submitted_at=dt.datetime.now(dt.UTC), chunks_done=0,
                   cancel_requested=False)
        marks = ", ".join(f"${i + 1}" for i in range(len(JOB_COLUMNS)))
        with self._connect() as con:
            con.execute(f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({marks})",  # noqa: S608 - constants
                        [row[c] for c in JOB_COLUMNS])
        return self.get(job_id) or row

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's row, or None."""
        rows = self._rows("SELECT * FROM jobs WHERE job_id = $1", [job_id])
        return rows[0] if rows else None

    def list(self, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Jobs, newest first (only those in ``state`` when given)."""
        where, params = ("WHERE state = $1 ", [state]) if state else ("", [])
        return self._rows(f"SELECT * FROM jobs {where}ORDER BY submitted_at DESC LIMIT {int(limit)}",  # noqa: S608
                          params)

    def claim(self, job_id: str | None = None, engine: str = "embedded",
              resume: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """Move one job from queued to running, atomically; returns its row, or None when there is none.

        Args:
            job_id: this job (else the oldest queued job of ``engine``).
            engine: which engine's queue ``job_id=None`` takes from.
            resume: other states this job may be claimed from (an Airflow task retry claims its own
                ``running`` job again).
        """
        states = ("queued", *resume)
        marks = ", ".join(f"${i + 4}" for i in range(len(states)))
        target = "$3" if job_id else ("(SELECT job_id FROM jobs WHERE state = 'queued' AND engine = $3 "
                                      "ORDER BY submitted_at, job_id LIMIT 1)")
        sql = (f"UPDATE jobs SET state = 'running', started_at = $1, heartbeat_at = $1, host = $2, "  # noqa: S608
               f"pid = {os.getpid()}, "
               f"error = NULL WHERE job_id = {target} AND state IN ({marks}) AND NOT coalesce(cancel_requested, "
               "false) RETURNING job_id")
        with self._connect() as con:
            got = con.execute(sql, [dt.datetime.now(dt.UTC), socket.gethostname(), job_id or engine, *states]
                              ).fetchall()
        return self.get(got[0][0]) if got else None

    def progress(self, job_id: str, chunks_done: int, chunks_total: int | None = None) -> bool:
        """Record chunks done (best effort: skipped when the file is busy); True when a cancel was asked."""
        try:
            with self._connect(wait_s=0) as con:
                con.execute("UPDATE jobs SET chunks_done = $2, chunks_total = coalesce($3, chunks_total), "
                            "heartbeat_at = $4 WHERE job_id = $1",
                            [job_id, chunks_done, chunks_total, dt.datetime.now(dt.UTC)])
                found = con.execute("SELECT cancel_requested FROM jobs WHERE job_id = $1", [job_id]).fetchall()
        except ScoringError as exc:
            logger.debug("progress of job %s skipped: %s", job_id, exc)
            return False
        return bool(found and found[0][0])

    def set_fields(self, job_id: str, **fields: Any) -> None:
        """Set some columns of a job's row (``model_version``, ``chunks_total``, ``airflow_run_id`` ...)."""
        names = [n for n in fields if n in JOB_COLUMNS and n != "job_id"]
        sets = ", ".join(f"{quote(n)} = ${i + 2}" for i, n in enumerate(names))
        values = [json.dumps(fields[n], default=str) if n == "details" else fields[n] for n in names]
        with self._connect() as con:
            con.execute(f"UPDATE jobs SET {sets} WHERE job_id = $1", [job_id, *values])  # noqa: S608

    def fail(self, job_id: str, error: str, counts: dict[str, int] | None = None, state: str = "failed",
             quarantine: tuple[str, list[Path], dict[str, Any]] | None = None) -> None:
        """End a job ``failed`` (or ``cancelled``) with a one-line error; a terminal job is left as it is.

        ``quarantine`` (run id, staged quarantine files, constants) keeps a data-quality failure's rejected rows.
        """
        counts = counts or {}
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                if quarantine and quarantine[1]:
                    self._replace_quarantine(con, job_id, *quarantine)
                con.execute("UPDATE jobs SET state = $2, error = $3, finished_at = $4, rows_in = coalesce($5, "  # noqa: S608
                            "rows_in), rows_scored = 0, rows_quarantined = coalesce($6, rows_quarantined) "
                            f"WHERE job_id = $1 AND state NOT IN ({', '.join(map(repr, TERMINAL))})",
                            [job_id, state, error, dt.datetime.now(dt.UTC), counts.get("rows_in"),
                             counts.get("rows_quarantined")])
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise

    def mark_interrupted(self, heartbeat_timeout_s: float, job_id: str | None = None, state: str = "interrupted",
                         by: str = "") -> list[str]:
        """End ``running`` embedded jobs whose worker process is gone (``liveness.attempt_alive``: exact for a
        pid of this host, else silence longer than ``heartbeat_timeout_s`` seconds) as ``state`` with one line
        naming the process; returns their ids. Live workers' jobs are left alone."""
        from scoring.storage.results.liveness import attempt_alive

        rows = [self.get(job_id)] if job_id else self.list("running", limit=1000)
        gone = []
        for job in filter(None, rows):
            if job["state"] != "running" or job["engine"] != "embedded" or attempt_alive(
                    job["host"], job["pid"], job["started_at"], job.get("heartbeat_at"), heartbeat_timeout_s):
                continue
            last = job.get("heartbeat_at") or job["started_at"]
            who = f"process {job['pid']} on {job['host']}" if job["pid"] else "its worker process"
            error = (f"{state}: {who} is gone (last heartbeat {last.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC, "
                     f"{job.get('chunks_done') or 0} of {job.get('chunks_total') or '?'} chunks staged)"
                     f"{f'; noticed by {by}' if by else ''}; submit it again to score it")
            self.fail(job["job_id"], error, state=state)
            gone.append(job["job_id"])
        return gone

    def cancel(self, job_id: str) -> str:
        """Cancel a queued job at once, or ask a running one to stop at its next chunk; returns the state."""
        with self._connect() as con:
            con.execute("UPDATE jobs SET state = 'cancelled', finished_at = $2, error = 'cancelled before it "
                        "started' WHERE job_id = $1 AND state = 'queued'", [job_id, dt.datetime.now(dt.UTC)])
            con.execute("UPDATE jobs SET cancel_requested = true WHERE job_id = $1 AND state = 'running'", [job_id])
            found = con.execute("SELECT state FROM jobs WHERE job_id = $1", [job_id]).fetchall()
        if not found:
            raise ScoringError(f"no job {job_id!r} in the jobs ledger")
        return found[0][0]

    def _replace_quarantine(self, con: duckdb.DuckDBPyConnection, job_id: str, run_id: str, files: list[Path],
                            constants: dict[str, Any]) -> None:
        table = quote(JOB_QUARANTINE.name)
        con.execute(f"DELETE FROM {table} WHERE job_id = $1", [job_id])  # noqa: S608 - quoted constant
        if files:
            con.execute(f"INSERT INTO {table} ({', '.join(map(quote, JOB_QUARANTINE.column_names))}) "  # noqa: S608
                        "SELECT $1, $2, $3, source_key, column_name, rule, value, row_json, reason, $4 "
                        "FROM read_parquet($5)", [run_id, constants["day"], constants["model_name"], job_id,
                                                  [str(f) for f in files]])

    def publish(self, job_id: str, run_id: str, prediction_files: list[Path], quarantine_files: list[Path],
                constants: dict[str, Any], counts: dict[str, int], output: str | None, to_table: bool,
                details: dict[str, Any] | None = None) -> None:
        """In one transaction: replace the job's partition of ``job_predictions`` (when ``to_table``) and
        ``job_quarantine`` with the staged rows, and mark the job succeeded with its counts.

        Args:
            job_id: the job (its partition).
            run_id: the attempt, kept in each row's ``run_id``.
            prediction_files, quarantine_files: the staged chunk files.
            constants: ``model_name``, ``model_version``, ``day``, ``scored_at`` of every row.
            counts: ``rows_in``, ``rows_scored``, ``rows_quarantined``.
            output: where the output file was written, if any.
            to_table: whether the job publishes into ``job_predictions``.
            details: the job's ledger details (the engine that scored it; ``replaced``: what replacing the
                output file removed); kept as they were when None.

        Raises:
            JobCancelled: the job was cancelled (or is no longer running); nothing is written.
            PublishError: the results database refused the write (one line).
        """
        spec = job_predictions_spec(self.results.cfg.table)
        table = quote(spec.name)
        names = [*STAGED_PREDICTION_COLUMNS, "model_name", "model_version", "run_id", "day", "scored_at", "job_id"]
        select = ", ".join([*map(quote, STAGED_PREDICTION_COLUMNS), "$1", "$2", "$3", "$4", "$5", "$6"])
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                state = con.execute("SELECT state, cancel_requested FROM jobs WHERE job_id = $1", [job_id]).fetchall()
                if not state or state[0][0] != "running" or state[0][1]:
                    raise JobCancelled(f"job {job_id} was cancelled (state {state[0][0] if state else 'missing'}); "
                                       "nothing was published")
                con.execute(f"DELETE FROM {table} WHERE job_id = $1", [job_id])  # noqa: S608 - quoted constant
                if to_table and prediction_files:
                    con.execute(f"INSERT INTO {table} ({', '.join(map(quote, names))}) "  # noqa: S608
                                f"SELECT {select} FROM read_parquet($7, union_by_name = true)",
                                [constants["model_name"], constants["model_version"], run_id, constants["day"],
                                 constants["scored_at"], job_id, [str(f) for f in prediction_files]])
                self._replace_quarantine(con, job_id, run_id, quarantine_files, constants)
                con.execute("UPDATE jobs SET state = 'succeeded', finished_at = $2, rows_in = $3, rows_scored = $4, "
                            "rows_quarantined = $5, output = $6, run_id = $7, error = NULL, "
                            "details = coalesce($8, details) WHERE job_id = $1",
                            [job_id, dt.datetime.now(dt.UTC), counts["rows_in"], counts["rows_scored"],
                             counts["rows_quarantined"], output, run_id,
                             None if details is None else json.dumps(details, default=str)])
                con.execute("COMMIT")
            except duckdb.Error as exc:
                _rollback(con)
                raise PublishError(f"publishing job {job_id} failed: {str(exc).strip().splitlines()[0]}") from None
            except BaseException:
                _rollback(con)
                raise

    def predictions(self, job_id: str) -> list[dict[str, Any]]:
        """The job's published rows, by source key (tests and small exports)."""
        name = quote(job_predictions_spec(self.results.cfg.table).name)
        return self._plain(f"SELECT * FROM {name} WHERE job_id = $1 ORDER BY source_key", [job_id])  # noqa: S608

    def _plain(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self._connect() as con:
            return con.sql(sql, params=params).to_arrow_table().to_pylist()


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")
