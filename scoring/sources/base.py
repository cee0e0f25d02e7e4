"""The source interface shared by the DuckDB and PostgreSQL readers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from scoring.sqlident import quote, quote_qualified

if TYPE_CHECKING:
    from scoring.config import SourceConfig
    from scoring.dates import DataInterval


class Source(ABC):
    """Reads exactly the rows with ``start <= ts < end`` of a data interval."""

    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg

    @property
    def describe(self) -> str:
        """Where the rows come from, for messages (never includes credentials)."""
        return self.cfg.table or "custom query"

    def relation_sql(self) -> str:
        """The FROM target: a quoted table, or the configured SELECT as a subquery."""
        if self.cfg.table:
            return quote_qualified(self.cfg.table)
        return f"({self.cfg.query}) AS src"

    def interval_sql(self, placeholder: tuple[str, str], select: str = "*") -> str:
        ts = quote(self.cfg.timestamp_column)
        return (f"SELECT {select} FROM {self.relation_sql()} "  # noqa: S608 - identifiers quoted
                f"WHERE {ts} >= {placeholder[0]} AND {ts} < {placeholder[1]}")

    @abstractmethod
    def schema(self) -> pa.Schema:
        """Columns and Arrow types of the source relation."""

    @abstractmethod
    def count(self, interval: DataInterval) -> int:
        """Rows in the interval."""

    @abstractmethod
    def batches(self, interval: DataInterval, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream the interval's rows in record batches of at most ``batch_rows`` rows."""

    def duplicates_sql(self, placeholder: tuple[str, str], column: str) -> str:
        """Generic SQL: the non-null values of ``column`` occurring more than once in the interval."""
        col = quote(column)
        return (f"SELECT {col} FROM ({self.interval_sql(placeholder, col)}) AS keys "  # noqa: S608 - quoted
                f"WHERE {col} IS NOT NULL GROUP BY {col} HAVING count(*) > 1")

    def duplicate_values(self, interval: DataInterval, column: str) -> pa.Array:
        """Values of ``column`` occurring more than once in the interval (data quality: unique keys).

        This generic version streams the interval once and counts with Arrow; sources override it with one
        ``duplicates_sql`` query.
        """
        import pyarrow.compute as pc

        parts = [b.column(column) for b in self.batches(interval, 1_000_000)]
        if not parts:
            return pa.array([], self.schema().field(column).type)
        counts = pc.value_counts(pa.chunked_array(parts).drop_null())
        return counts.field("values").filter(pc.greater(counts.field("counts"), 1))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
