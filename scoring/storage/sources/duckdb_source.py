"""DuckDB source: a read-only connection streaming Arrow batches."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from scoring.errors import SourceError
from scoring.sqlident import quote
from scoring.storage.duck import SOURCE_MEMORY_MIB, duck_connect
from scoring.storage.sources.base import KeyRange, Source, cuts_from_maxima

if TYPE_CHECKING:
    from scoring.config import SourceConfig
    from scoring.dates import DataInterval

logger = logging.getLogger(__name__)

NESTED_BYTES = 48  # a list or struct value's bytes, unmeasured (the chunk sizing's estimate of a variable value)


def check_duckdb_file(path: Path) -> None:
    """Refuse a source file that is not a DuckDB database, saying what it is and what to do instead.

    Raises:
        SourceError: a Parquet, SQLite, CSV/text or other non-DuckDB file (DuckDB files carry ``DUCK`` at byte 8).
    """
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head[8:12] == b"DUCK" or not head:
        return
    load = f"load it into a DuckDB file first, e.g. duckdb source.duckdb -c \"CREATE TABLE t AS FROM '{path}'\""
    if head[:4] == b"PAR1":
        kind = "a Parquet file"
    elif head[:16] == b"SQLite format 3\x00":
        kind, load = "a SQLite database", ("export its table to Parquet or CSV and load that into a DuckDB file "
                                            "(reading SQLite would need a DuckDB extension, which is never "
                                            "downloaded at run time)")
    elif b"\x00" not in head:
        kind = "a text (CSV?) file"
    else:
        kind = "not a DuckDB database"
    raise SourceError(f"source.path {str(path)!r} is {kind}, not a DuckDB database: {load}")


class DuckDBSource(Source):
    """Reads a table or SELECT from a DuckDB file, opened read-only."""

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg)
        path = cfg.path
        if path is None or not path.is_file():
            raise SourceError(f"source database {str(path)!r} not found")
        check_duckdb_file(path)
        try:
            self.con = duck_connect(path, read_only=True, memory_mib=SOURCE_MEMORY_MIB)
        except duckdb.Error as exc:
            raise SourceError(f"cannot open source database {str(path)!r}: {exc}") from None
        self._schema: pa.Schema | None = None

    def _run(self, sql: str, params: list[object] | None = None) -> duckdb.DuckDBPyRelation:
        try:
            return self.con.sql(sql, params=params)
        except duckdb.CatalogException as exc:
            raise SourceError(f"source {self.describe!r} in {str(self.cfg.path)!r}: {_first_line(exc)}") from None
        except duckdb.Error as exc:
            raise SourceError(f"source query failed: {_first_line(exc)}") from None

    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._schema = self._run(f"SELECT * FROM {self.relation_sql()} LIMIT 0").to_arrow_table().schema  # noqa: S608
        return self._schema

    def _params(self, interval: DataInterval) -> list[object]:
        return list(self.interval_bounds(interval))

    def count(self, interval: DataInterval) -> int:
        return int(self.interval_row(interval, "count(*)")[0])

    def batches(self, interval: DataInterval, batch_rows: int) -> Iterator[pa.RecordBatch]:
        yield from self._stream(self.interval_sql(("$1", "$2"), self.row_select()), self._params(interval),
                                batch_rows, interval)

    def text_length_sql(self, field: pa.Field) -> str:
        name = quote(field.name)
        # a column Arrow receives as text may be another SQL type (UUID, JSON): measured as the text read
        return f"strlen(CAST({name} AS VARCHAR))" if pa.types.is_string(field.type) or pa.types.is_large_string(field.type) \
            else f"octet_length({name})"

    def interval_row(self, interval: DataInterval, select: str) -> tuple[Any, ...]:
        return self._run(self.interval_sql(("$1", "$2"), select), self._params(interval)).fetchall()[0]

    def widest_row_bytes(self, interval: DataInterval) -> int:
        """An upper bound of one row's Arrow bytes among the interval's rows, for the columns read: fixed-width
        columns at their width, text and binary at their longest value in the interval (``text_widths``)
        plus the 4-byte offset."""
        widths = self.text_widths(interval)
        total = 0
        for field in self.read_schema():
            if _fixed_width(field.type):
                total += max(field.type.bit_width // 8, 1)
            elif field.name in widths:
                total += widths[field.name][1] + 4
            else:  # nested values: the sizing's own estimate
                total += NESTED_BYTES
        return total

    def _stream(self, sql: str, params: list[object], batch_rows: int,
                interval: DataInterval) -> Iterator[pa.RecordBatch]:
        """The query's rows as Arrow batches of ``batch_rows``, under a memory limit that bounds what DuckDB
        keeps cached from the scan: ``SOURCE_MEMORY_MIB``, or 2x the widest possible batch when that is more
        (``widest_row_bytes``: long texts read). A first batch that still does not fit is read again with
        DuckDB's default limit, once; running out of memory after batches were handed on raises SourceError."""
        need_mib = math.ceil(2 * batch_rows * self.widest_row_bytes(interval) / 2**20)
        self.con.execute(f"SET memory_limit = '{max(SOURCE_MEMORY_MIB, need_mib)}MiB'")
        yielded = 0
        for attempt in (1, 2):
            try:
                for batch in self._run(sql, params).to_arrow_reader(batch_rows):
                    yielded += 1
                    yield batch
                return
            except duckdb.OutOfMemoryException as exc:
                if yielded or attempt == 2:
                    raise SourceError(f"reading source {self.describe!r} ran out of memory after {yielded} "
                                      f"batch(es): {_first_line(exc)}; lower chunking.memory_budget_mib or "
                                      "chunking.rows_per_chunk") from None
                logger.info("a batch of %s rows of %s needs more than %s MiB in DuckDB; reading with DuckDB's "
                            "default memory limit", batch_rows, self.describe, SOURCE_MEMORY_MIB)
                self.con.execute("RESET memory_limit")
            except duckdb.Error as exc:
                raise SourceError(f"reading source {self.describe!r} failed: {_first_line(exc)}") from None

    def day_counts(self, intervals: list[DataInterval]) -> list[int]:
        bounds = [self._params(i)[0] for i in intervals] + [self._params(intervals[-1])[1]] if intervals else []
        counts = dict(self._run(self.day_counts_sql(lambda n: f"${n}", len(intervals)), bounds).fetchall())
        return [int(counts.get(i, 0)) for i in range(len(intervals))]

    def key_cuts(self, interval: DataInterval, n_chunks: int) -> list[Any]:
        sql = self.key_cuts_sql(lambda n: f"${n}")
        maxima = [row[0] for row in self._run(sql, [*self._params(interval), n_chunks]).fetchall()]
        return cuts_from_maxima(maxima)

    def range_batches(self, interval: DataInterval, key_range: KeyRange, batch_rows: int) -> Iterator[pa.RecordBatch]:
        sql, params = self.range_sql(lambda n: f"${n}", self._params(interval), key_range)
        yield from self._stream(sql, params, batch_rows, interval)

    def duplicate_values(self, interval: DataInterval, column: str) -> pa.Array:
        table = self._run(self.duplicates_sql(("$1", "$2"), column), self._params(interval)).to_arrow_table()
        return table.column(0).combine_chunks()

    def latest_of_duplicates(self, interval: DataInterval | None, column: str, ts: str) -> pa.Table:
        if interval is None:
            return super().latest_of_duplicates(interval, column, ts)
        return self._run(self.latest_sql(("$1", "$2"), column, ts), self._params(interval)).to_arrow_table()

    def timestamp_bounds(self) -> tuple[Any, Any]:
        ts = quote(self.cfg.timestamp_column)
        rows = self._run(f"SELECT min({ts}), max({ts}) FROM {self.relation_sql()}").fetchall()  # noqa: S608
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def close(self) -> None:
        self.con.close()


def _fixed_width(arrow_type: pa.DataType) -> bool:
    try:
        arrow_type.bit_width  # noqa: B018 - raises for variable-width types
    except ValueError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
