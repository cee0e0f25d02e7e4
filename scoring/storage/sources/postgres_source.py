"""PostgreSQL source: Arrow record batches over ADBC, from one REPEATABLE READ snapshot.

The interval is bound as parameters into two transaction-local settings (``set_config($1, $2, true)``)
that the extraction query reads with ``current_setting(...)``. A query without parameters lets the ADBC
driver stream it with ``COPY ... TO STDOUT (FORMAT binary)`` in bounded record batches; a query with
bound parameters would be read into memory whole. The bounds are scalar subqueries over
``current_setting``, evaluated once per query, so an index on the timestamp column is still used.

A planned chunk reads only its key range the same way (``range_batches``: the range's bounds are bound into
``scoring.key_<n>`` settings and cast to the key column's own type), the plan's cut points are computed in
one ``ntile`` query (``key_cuts``), and duplicate keys are found by one grouped query (``duplicate_values``):
no step of a planned run reads the day's rows into Python to filter them. The plan gets both from one window
pass (``key_cuts_and_duplicates``), whose bucket ends follow from the non-null key count that every interval
aggregate (``interval_row``: ``count``, ``text_widths``) also returns.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from scoring.errors import SourceError
from scoring.sqlident import quote
from scoring.storage.pgconn import connect, error_line, resolve_url
from scoring.storage.sources.base import KeyRange, Source, cuts_from_maxima, ntile_ends, ntile_shape
from scoring.storage.sources.pg_numeric import NumericReader, is_numeric
from scoring.storage.sources.rebatch import rebatch

if TYPE_CHECKING:
    from scoring.config import SourceConfig
    from scoring.dates import DataInterval

logger = logging.getLogger(__name__)

START, END = "scoring.interval_start", "scoring.interval_end"
KEY_SETTING = "scoring.key_{}"  # the n-th parameter of a key range read (n >= 3)
PG_TYPE = b"POSTGRESQL:type"


def quote_any(name: str) -> str:
    """Double-quote a column name read from the database (any characters)."""
    return '"' + name.replace('"', '""') + '"'


def _select_item(field: pa.Field) -> str:
    """How to read one column: numeric as its text (decoded exactly by ``NumericReader``); the other types
    ADBC returns as extensions (uuid, json, ...) as text."""
    name = quote_any(field.name)
    if is_numeric(field):
        return name
    if isinstance(field.type, pa.BaseExtensionType):
        return f"CAST({name} AS text) AS {name}"
    return name


class PostgresSource(Source):
    """Reads a table or SELECT from PostgreSQL inside one read-only REPEATABLE READ transaction.

    Every statement of the run (schema, count, extraction) sees the same snapshot, so rows committed
    while the run reads are neither half-read nor read twice; re-running the day picks them up.
    """

    def __init__(self, cfg: SourceConfig) -> None:
        super().__init__(cfg)
        self.url = resolve_url(cfg.url, cfg.connection_id)
        self.con = connect(self.url, cfg.connect_timeout_s, "source", SourceError)
        self._raw: pa.Schema | None = None
        self._schema: pa.Schema | None = None
        self._numeric: NumericReader | None = None
        # (interval, key column) -> (rows, non-null keys): every aggregate over an interval counts them
        # (``interval_row``); valid for the source's life, as every statement reads the same snapshot. The
        # interval's zone is part of it: naive timestamp and date bounds depend on it.
        self._counts: dict[tuple[DataInterval, str], tuple[int, int | None]] = {}
        try:  # the first statements of the transaction the ADBC driver opened
            self._execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self._execute("SET LOCAL TIME ZONE 'UTC'")
        except BaseException:
            self.close()
            raise

    def _execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.con.cursor() as cur:
            try:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
            except Exception as exc:  # noqa: BLE001 - every driver error becomes one line
                raise self._error(exc) from None

    def _error(self, exc: BaseException) -> SourceError:
        return SourceError(f"source {self.describe!r}: {error_line(exc, self.url)}")

    def _arrow(self, sql: str) -> pa.Table:
        with self.con.cursor() as cur:
            try:
                cur.execute(sql)
                return cur.fetch_arrow_table()
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc) from None

    def _select(self) -> str:
        if self._raw is None:
            self._raw = self._arrow(f"SELECT * FROM {self.relation_sql()} LIMIT 0").schema  # noqa: S608
            self._numeric = NumericReader.of(self._raw, self.cfg.key_column)
            self.double_range_columns = frozenset(n for n, t in self._numeric.targets.items() if t == pa.float64())
            self.special_columns = self._numeric.special_columns
        items = [_select_item(f) for f in self._raw]
        if all(item == quote_any(f.name) for item, f in zip(items, self._raw, strict=True)):
            return "*"
        return ", ".join(items)

    def schema(self) -> pa.Schema:
        """The columns as scoring reads them (numeric exactly, see ``pg_numeric``; uuid/json as string)."""
        if self._schema is None:
            raw = self._arrow(f"SELECT {self._select()} FROM {self.relation_sql()} LIMIT 0").schema  # noqa: S608
            self._schema = self._numeric.schema(raw, marks=True)  # as the batches carry them
        return self._schema

    def _bind(self, interval: DataInterval) -> tuple[str, str]:
        """Bind the interval into transaction-local settings; return the bounds as SQL expressions."""
        cast, bounds = self._typed_bounds(interval)
        self._execute("SELECT set_config($1, $2, true), set_config($3, $4, true)",
                      [START, bounds[0], END, bounds[1]])
        # Scalar subqueries run once (an InitPlan); a bare current_setting() would be re-evaluated per row.
        return (f"(SELECT CAST(current_setting('{START}') AS {cast}))",
                f"(SELECT CAST(current_setting('{END}') AS {cast}))")

    def _value_bounds(self, interval: DataInterval) -> tuple[str, tuple[Any, Any]]:
        """The SQL type of the timestamp column and the interval's bounds as datetime/date values, to bind as
        query parameters cast to that type. Bound as values, not as their text: a cast from text to a
        timestamp or date type is not folded into a constant (its result depends on session settings), so a
        text bound compared per row was cast again on every row of the scan."""
        kind = self.schema().field(self.cfg.timestamp_column).type
        bounds = self.interval_bounds(interval)  # raises for a missing column or another type
        cast = "date" if pa.types.is_date(kind) else "timestamptz" if kind.tz is not None else "timestamp"
        return cast, bounds

    def _typed_bounds(self, interval: DataInterval) -> tuple[str, tuple[str, str]]:
        """``_value_bounds`` with the bounds as text of that type (``_bind``'s transaction settings)."""
        cast, (lo, hi) = self._value_bounds(interval)
        return cast, (lo.isoformat(), hi.isoformat())

    def day_counts(self, intervals: list[DataInterval]) -> list[int]:
        if not intervals:
            return []
        bounds = [self._value_bounds(i) for i in intervals]
        cast = bounds[0][0]
        params = [b[1][0] for b in bounds] + [bounds[-1][1][1]]
        sql = self.day_counts_sql(lambda n: f"CAST(${n} AS {cast})", len(intervals))
        counts = {int(b): int(n) for b, n in self._execute(sql, params)}
        return [counts.get(i, 0) for i in range(len(intervals))]

    def text_length_sql(self, field: pa.Field) -> str:
        name = quote_any(field.name)
        # uuid, json and other types read as text are measured as the text they are read as
        return f"octet_length({name})" if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type) \
            else f"octet_length(CAST({name} AS text))"

    def interval_row(self, interval: DataInterval, select: str) -> tuple[Any, ...]:
        """As ``Source.interval_row``, in the run's snapshot: the values of ``select``'s items, in order.

        The same scan also counts the interval's rows and non-null keys, cached for ``count`` and
        ``key_count``: after the plan's text widths, its row count and key cuts need no scan of their own.
        """
        self._select()  # reads the raw schema once
        key = self.cfg.key_column
        has_key = key in self._raw.names
        items = [*([select] if select else []), "count(*) AS scoring_rows",
                 *([f"count({quote_any(key)}) AS scoring_keys"] if has_key else [])]
        table = self._arrow(self.interval_sql(self._bind(interval), ", ".join(items)))
        # by position: the items' names may repeat (two bare count(...) are both "count")
        row = [column[0].as_py() for column in table.columns]
        keys = int(row.pop()) if has_key else None
        self._counts[(interval, key)] = (int(row.pop()), keys)
        return tuple(row)

    def _interval_counts(self, interval: DataInterval) -> tuple[int, int | None]:
        """(rows, non-null keys or None without a key column) of the interval: cached, else one query."""
        cache = (interval, self.cfg.key_column)
        if cache not in self._counts:
            self.interval_row(interval, "")
        return self._counts[cache]

    def count(self, interval: DataInterval) -> int:
        return self._interval_counts(interval)[0]

    def key_count(self, interval: DataInterval) -> int:
        """Non-null keys in the interval (cached as ``count``). Raises SourceError when the key column is
        missing."""
        self._key_type()  # names a missing key column
        keys = self._interval_counts(interval)[1]
        assert keys is not None  # the key column exists
        return keys

    def row_select(self) -> str:
        """The selected columns (all by default), read as ``schema()`` reads them (uuid as text, ...)."""
        if self.read_columns is None:
            return self._select()
        self._select()  # reads the raw schema once
        wanted = set(self.read_columns)
        return ", ".join(_select_item(f) for f in self._raw if f.name in wanted)

    def batches(self, interval: DataInterval, batch_rows: int) -> Iterator[pa.RecordBatch]:
        yield from self._stream(self.interval_sql(self._bind(interval), self.row_select()), batch_rows)

    def _stream(self, sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream a parameter-free query (COPY binary) in batches of ``batch_rows`` rows."""
        with self.con.cursor() as cur:
            try:
                cur.execute(sql)
                reader = cur.fetch_record_batch()
                yield from rebatch((self._numeric.decode(b, marks=True) for b in reader), batch_rows)
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc) from None

    def _key_type(self) -> str:
        """The key column's PostgreSQL type, quoted, to cast bound key values to (so comparisons use the
        column's own ordering and an index on it). Raises SourceError when the column is missing."""
        self._select()  # reads the raw schema once
        key = self.cfg.key_column
        if key not in self._raw.names:
            raise SourceError(f"key column {key!r} not in source {self.describe!r}")
        pg_type = (self._raw.field(key).metadata or {}).get(PG_TYPE, b"").decode()
        if not pg_type:
            raise SourceError(f"key column {key!r} of source {self.describe!r}: the driver did not report its type")
        return quote_any(pg_type)

    def key_cuts(self, interval: DataInterval, n_chunks: int) -> list[Any]:
        """Cut points from one ``ntile`` query over the interval's keys (only the key column is read).

        The largest key of each bucket comes from ``DISTINCT ON`` (``max`` does not exist for every type,
        uuid for one); a key the driver does not return as a plain value (uuid, numeric, ...) is returned as
        text, which ``range_batches`` casts back. Parameters are bound: the interval bounds as values of the
        timestamp column's type (``_value_bounds``), the bucket count.
        """
        cast, bounds = self._value_bounds(interval)
        self._key_type()  # a missing key column is named before the query fails on it
        key = quote(self.cfg.key_column)
        field = self._raw.field(self.cfg.key_column)
        plain = _select_item(field) == quote_any(self.cfg.key_column) and not is_numeric(field)
        inner = self.interval_sql((f"CAST($1 AS {cast})", f"CAST($2 AS {cast})"), f"{key} AS k")
        sql = (f"SELECT DISTINCT ON (b) {'k' if plain else 'CAST(k AS text)'} AS cut "  # noqa: S608 - quoted
               f"FROM (SELECT k, ntile(CAST($3 AS integer)) OVER (ORDER BY k) AS b "
               f"FROM ({inner} AND {key} IS NOT NULL) AS keys) AS buckets ORDER BY b, k DESC")
        return cuts_from_maxima([row[0] for row in self._execute(sql, [*bounds, n_chunks])])

    def key_cuts_and_duplicates(self, interval: DataInterval, n_chunks: int) -> tuple[list[Any], pa.Array] | None:
        """``key_cuts`` and ``duplicate_values`` of the key column from ONE sort of the interval's keys (the
        plan needs both: two queries sorted or hashed the day's keys twice).

        Each key row gets its position and its neighbours' keys over one window; a row is kept when it ends an
        ``ntile`` bucket (a bucket maximum, as ``key_cuts`` takes it: the bucket ends are computed here from
        the number of non-null keys, ``key_count``, as ``ntile`` distributes rows) or ends a run of equal keys
        (a duplicate value, once). Returns ``(cuts, duplicates)`` equal to the two separate queries' results,
        or None when the key is not a plain integer or text column (``key_cuts`` casts such keys to text;
        callers then use the two queries). Raises SourceError when the key column is missing.
        """
        self._key_type()  # a missing key column is named before the query fails on it
        field = self._raw.field(self.cfg.key_column)
        kind = self.schema().field(self.cfg.key_column).type
        plain = _select_item(field) == quote_any(self.cfg.key_column) and not is_numeric(field)
        if not plain or not (pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            return None
        keys = self.key_count(interval)
        ends = ntile_ends(keys, n_chunks)
        if not ends:  # no non-null key: no bucket, no duplicate (what the window query returns)
            return [], pa.array([], kind)
        # The bounds bound as values (``_value_bounds``): bound as text, their casts ran twice per row of the
        # scan (about half the query on a 1M-row day).
        cast, bounds = self._value_bounds(interval)
        key = quote(self.cfg.key_column)
        inner = self.interval_sql((f"CAST($1 AS {cast})", f"CAST($2 AS {cast})"), f"{key} AS k")
        # row_number over the same window as lag/lead: one sort, one window pass (ntile's own bucket number
        # needed a second window, lead(b), to tell a bucket's last row). Row r is one of ``ends`` when it ends
        # one of the first ``extra`` buckets of size + 1 rows (up to row $3) or one of the size-row ($4) buckets
        # after them: arithmetic, not r = ANY(<ends>), which PostgreSQL casts from the bound text on every row
        # and searches element by element (slower than the second window it replaces).
        _, size, extra = ntile_shape(keys, n_chunks)
        big, small = "CAST($3 AS bigint)", "CAST($4 AS bigint)"
        sql = ("SELECT r, k, (k = prev AND k IS DISTINCT FROM nxt) AS dup FROM ("  # noqa: S608 - quoted
               "SELECT k, row_number() OVER w AS r, lag(k) OVER w AS prev, lead(k) OVER w AS nxt "
               f"FROM ({inner} AND {key} IS NOT NULL) AS keys WINDOW w AS (ORDER BY k)) AS ranked "
               f"WHERE (r <= {big} AND r % ({small} + 1) = 0) OR (r > {big} AND (r - {big}) % {small} = 0) "
               "OR (k = prev AND k IS DISTINCT FROM nxt) ORDER BY r")
        rows = self._execute(sql, [*bounds, extra * (size + 1), size])
        at = {position: value for position, value, _dup in rows}
        if any(end not in at for end in ends):  # never: both statements read the transaction's snapshot
            raise SourceError(f"source {self.describe!r}: the interval's keys changed between two statements")
        duplicates = pa.array([value for _r, value, dup in rows if dup], kind)
        return cuts_from_maxima([at[end] for end in ends]), duplicates

    def range_batches(self, interval: DataInterval, key_range: KeyRange, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream the interval's rows in ``key_range``: the range is in the SQL (``range_sql``), its bounds bound
        into transaction-local settings like the interval's, so the query still streams with COPY."""
        start, end = self._bind(interval)
        key_type = self._key_type()

        def ph(n: int) -> str:
            if n <= 2:
                return (start, end)[n - 1]
            return f"(SELECT CAST(current_setting('{KEY_SETTING.format(n)}') AS {key_type}))"

        sql, params = self.range_sql(ph, [None, None], key_range)
        keys = [(KEY_SETTING.format(n), str(value)) for n, value in enumerate(params[2:], start=3)]
        if keys:
            self._execute("SELECT " + ", ".join(f"set_config(${2 * i + 1}, ${2 * i + 2}, true)"
                                                for i in range(len(keys))),
                          [item for pair in keys for item in pair])
        yield from self._stream(sql, batch_rows)

    def duplicate_values(self, interval: DataInterval, column: str) -> pa.Array:
        """Values of ``column`` occurring more than once in the interval, from one grouped query; read as
        ``schema()`` reads the column (numeric exactly, ...). Raises SourceError for a missing column."""
        self._select()  # reads the raw schema once
        if column not in self._raw.names:
            raise SourceError(f"column {column!r} not in source {self.describe!r}")
        name = quote_any(column)
        inner = self.interval_sql(self._bind(interval), _select_item(self._raw.field(column)))
        table = self._arrow(f"SELECT {name} FROM ({inner}) AS keys WHERE {name} IS NOT NULL "  # noqa: S608
                            f"GROUP BY {name} HAVING count(*) > 1")
        batches = [self._numeric.decode(b) for b in table.to_batches()]
        if not batches:
            return pa.array([], self.schema().field(column).type)
        return pa.Table.from_batches(batches).column(0).combine_chunks()

    def latest_of_duplicates(self, interval: DataInterval | None, column: str, ts: str) -> pa.Table:
        """As ``Source.latest_of_duplicates``, one window query in the run's snapshot; the key read as
        ``schema()`` reads it (numeric exactly)."""
        self._select()  # reads the raw schema once
        for name in (column, ts):
            if name not in self._raw.names:
                raise SourceError(f"column {name!r} not in source {self.describe!r}")
        item = _select_item(self._raw.field(column))
        key_sql = None if item == quote_any(column) else f"CAST({quote_any(column)} AS text)"
        table = self._arrow(self.latest_sql(self._bind(interval), column, ts, key_sql))
        reader = NumericReader({"k": self._numeric.targets[column]} if column in self._numeric.targets else {})
        batches = [reader.decode(b) for b in table.to_batches()]
        return pa.Table.from_batches(batches, reader.schema(table.schema))

    def timestamp_bounds(self) -> tuple[Any, Any]:
        ts = quote(self.cfg.timestamp_column)
        rows = self._execute(f"SELECT min({ts}), max({ts}) FROM {self.relation_sql()}")  # noqa: S608
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def close(self) -> None:
        con, self.con = getattr(self, "con", None), None
        if con is not None:
            with contextlib.suppress(Exception):  # a broken connection was rolled back by the server
                con.rollback()
            con.close()
