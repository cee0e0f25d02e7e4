"""Source readers: stream a data interval's rows as Arrow record batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scoring.storage.sources.base import Source

if TYPE_CHECKING:
    from scoring.config import SourceConfig

__all__ = ["Source", "open_source"]


def open_source(cfg: SourceConfig) -> Source:
    """The reader for ``cfg.kind``; the one place that maps configuration to an implementation."""
    if cfg.kind == "duckdb":
        from scoring.storage.sources.duckdb_source import DuckDBSource

        return DuckDBSource(cfg)
    from scoring.storage.sources.postgres_source import PostgresSource

    return PostgresSource(cfg)
