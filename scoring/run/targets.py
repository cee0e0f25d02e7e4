"""Where a run publishes: a (day, model) partition of the results tables, or an on-demand job's partition
(and its output file).

The engine's one publish step (``pipeline.finish_run``: totals, checks, engine, then the target) and its one
failure path (``pipeline.record_failure``: status, one-line error, quarantine of a failed validation, then the
target) are the same for both; a target owns only its own transaction. Add a target, never a copy of the steps.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from scoring.config import Config
from scoring.errors import first_line, one_line
from scoring.reports.summaries import summarize
from scoring.run.shadow import Shadow, shadow_tables
from scoring.storage.job_output import write_output
from scoring.storage.results import ResultsStore, RunRecord
from scoring.storage.results.jobs_ledger import JobLedger
from scoring.storage.results.replaced import note_removed_predictions, note_replaced_output
from scoring.storage.staging import ChunkManifest, Stage

logger = logging.getLogger(__name__)


class Target(Protocol):
    """What a run publishes into."""

    def previous_drift(self, cfg: Config, run: RunRecord) -> list[dict[str, list[int]]]:
        """Drift counts of earlier days to pool with this run's (empty when the target has no days)."""
        ...

    def publish(self, run: RunRecord, stage: Stage, manifests: list[ChunkManifest], files: list[Path],
                qfiles: list[Path], extra: dict[str, pa.Table], shadow: Shadow | None, task: str) -> None:
        """One transaction: the staged rows replace the target's partition; the run is marked successful."""
        ...

    def fail(self, run: RunRecord, quarantine_files: list[Path] | None) -> None:
        """Record the failed (finished) ``run``; keep ``quarantine_files``' rows when given. Never touches
        published predictions."""
        ...


@dataclass(frozen=True)
class PartitionTarget:
    """The (day, model) partition of the predictions table and its side tables, and the runs ledger."""

    results: ResultsStore

    def previous_drift(self, cfg: Config, run: RunRecord) -> list[dict[str, list[int]]]:
        return previous_drift_counts(cfg, self.results, run)

    def publish(self, run: RunRecord, stage: Stage, manifests: list[ChunkManifest], files: list[Path],
                qfiles: list[Path], extra: dict[str, pa.Table], shadow: Shadow | None, task: str) -> None:
        note_removed_predictions(self.results, run, files, qfiles)  # a key published before and gone: said
        self.results.publish(run, files, qfiles, extra={**extra, **summarize(run, files, qfiles, task),
                                                        **shadow_tables(run, stage, manifests, shadow, task)})

    def fail(self, run: RunRecord, quarantine_files: list[Path] | None) -> None:
        if quarantine_files:
            try:
                self.results.record_failure(run, quarantine_files)
                return
            except Exception as err:  # noqa: BLE001 - the ledger row is finalised without the quarantine rows
                logger.error("could not keep the quarantine rows of failed run %s: %s", run.run_id, one_line(err))
        self.results.fail_run(run)


@dataclass(frozen=True)
class JobTarget:
    """An on-demand job's partition of ``job_predictions`` / ``job_quarantine``, its output file (written
    aside and renamed over before the transaction, by ``storage/job_output.write_output``) and its row of
    the jobs ledger."""

    ledger: JobLedger
    job_id: str
    output: Path | None = None
    to_table: bool = True

    def previous_drift(self, cfg: Config, run: RunRecord) -> list[dict[str, list[int]]]:
        return []

    @staticmethod
    def constants(run: RunRecord) -> dict[str, Any]:
        """The columns every published row of the job carries."""
        return {"model_name": run.model_name, "model_version": run.model_version, "day": run.day,
                "scored_at": run.started_at}

    def publish(self, run: RunRecord, stage: Stage, manifests: list[ChunkManifest], files: list[Path],
                qfiles: list[Path], extra: dict[str, pa.Table], shadow: Shadow | None, task: str) -> None:
        constants = self.constants(run)
        if self.output is not None:  # an --output replacing an earlier file: what it removes is said
            replaced = note_replaced_output(self.job_id, self.output, files, qfiles)
            if replaced:
                run.details["replaced"] = replaced
            write_output(self.output, files, {**constants, "run_id": run.run_id, "job_id": self.job_id})
        counts = {"rows_in": run.rows_in, "rows_scored": run.rows_scored, "rows_quarantined": run.rows_rejected}
        self.ledger.publish(self.job_id, run.run_id, files, qfiles, constants, counts,
                            str(self.output) if self.output else None, self.to_table, details=run.details)

    def fail(self, run: RunRecord, quarantine_files: list[Path] | None) -> None:
        counts = {"rows_in": run.rows_in, "rows_quarantined": run.rows_rejected} if run.rows_in else None
        state = "cancelled" if run.status == "cancelled" else "failed"
        self.ledger.fail(self.job_id, run.error or "failed", counts, state=state,
                         quarantine=(run.run_id, quarantine_files, self.constants(run)) if quarantine_files else None)


def previous_drift_counts(cfg: Config, results: ResultsStore, run: RunRecord) -> list[dict[str, list[int]]]:
    """Drift counts of the ``validation.drift.window_days`` - 1 business days before ``run.day`` published
    with the same model version (empty for a one-day window, or days without counts)."""
    window = cfg.validation.drift.window_days
    if window <= 1:
        return []
    try:
        rows = results.drift_counts(run.model_name, run.model_version, run.day - dt.timedelta(days=window - 1),
                                    run.day)
    except Exception as exc:  # noqa: BLE001 - a results database without counts yet: judge the day alone
        logger.info("no earlier drift counts to pool (%s)", first_line(exc))
        return []
    by_day: dict[Any, dict[str, list[int]]] = {}
    for row in rows:
        counts = json.loads(row["counts"]) if isinstance(row["counts"], str) else row["counts"]
        if counts:
            by_day.setdefault(row["day"], {})[row["feature"]] = counts
    return list(by_day.values())
