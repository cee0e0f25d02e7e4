"""The results-store interface and the run ledger record."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from scoring.config import ResultsConfig

from scoring.storage.results.tables import RUNS

RUN_COLUMNS = tuple(RUNS.column_names)


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

    def finish(self, status: str, error: str | None = None) -> None:
        self.status = status
        self.error = error
        self.finished_at = dt.datetime.now(dt.UTC)
        self.duration_s = (self.finished_at - self.started_at).total_seconds()

    def values(self) -> list[Any]:
        import json

        row = [getattr(self, c) for c in RUN_COLUMNS]
        row[-1] = json.dumps(self.details, default=str)
        return row


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

    def record_failure(self, run: RunRecord, quarantine_files: list[Path]) -> None:
        """Record a run that failed a data quality rule, keeping its quarantine rows so users can see which
        rows and rules failed: the rows are appended (tagged with the run id) and the ledger row updated in
        one transaction; predictions and the other tables are not touched. The next successful run of the
        day replaces the day's quarantine partition. Stores without an implementation record the failure
        only."""
        self.fail_run(run)

    @abstractmethod
    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run a read query (named tables are the store's own) and return an Arrow table."""

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

    def predictions(self, day: dt.date, model: str) -> pa.Table:
        sql = (f"SELECT * FROM {self.table_name(self.cfg.table)} "  # noqa: S608 - quoted identifier
               "WHERE day = $1 AND model_name = $2 ORDER BY source_key")
        return self.query(sql, [day, model])
