"""Results stores: predictions, quarantine and the run ledger, published atomically per (day, model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scoring.storage.results.base import ResultsStore, RunRecord

if TYPE_CHECKING:
    from scoring.config import ResultsConfig

__all__ = ["ResultsStore", "RunRecord", "open_results"]


def open_results(cfg: ResultsConfig) -> ResultsStore:
    """The store for ``cfg.kind``; the one place that maps configuration to an implementation."""
    if cfg.kind == "duckdb":
        from scoring.storage.results.duckdb_store import DuckDBResults

        return DuckDBResults(cfg)
    from scoring.storage.results.postgres_store import PostgresResults

    return PostgresResults(cfg)
