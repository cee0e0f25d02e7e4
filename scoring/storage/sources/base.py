"""The source interface shared by the DuckDB and PostgreSQL readers."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from scoring.errors import SourceError
from scoring.sqlident import quote, quote_qualified
from scoring.storage.sources.pg_numeric import SPECIAL_PREFIX

if TYPE_CHECKING:
    from scoring.config import SourceConfig
    from scoring.dates import DataInterval

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyRange:
    """A deterministic subset of an interval's rows: ``lo < key <= hi`` (a None bound is open).

    ``nulls`` adds the rows whose key is NULL (they are quarantined, never dropped). Consecutive ranges built
    by ``key_ranges`` cover every row of the interval exactly once, whatever rows arrive later.
    """

    lo: Any = None
    hi: Any = None
    nulls: bool = False


def key_ranges(cuts: list[Any]) -> list[KeyRange]:
    """Ranges split at the sorted ``cuts``: ``(-inf, c0] + NULL, (c0, c1], ..., (c_last, +inf)``."""
    bounds = [None, *cuts, None]
    return [KeyRange(bounds[i], bounds[i + 1], nulls=i == 0) for i in range(len(cuts) + 1)]


def is_text(arrow_type: pa.DataType) -> bool:
    """Text or binary: the variable-width types whose values a source can measure."""
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type))


class Source(ABC):
    """Reads exactly the rows with ``start <= ts < end`` of a data interval."""

    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.read_columns: list[str] | None = None  # None: every column of the relation
        # columns a source can only deliver as text (a CSV's): a model input read as a number from one of them
        # is parsed row by row whatever validation.schema_drift says (it is not drift)
        self.text_columns: frozenset[str] = frozenset()
        # columns parsed to float64 from a wider type (PostgreSQL's unconstrained numeric): a value beyond the
        # double range arrives as +/-inf and is quarantined by the run's own range rule
        self.double_range_columns: frozenset[str] = frozenset()
        # columns of a type that cannot hold every source value (PostgreSQL numeric(p, s) holding NaN): each
        # batch carries ``special_column(name)`` with the value's text where it could not be represented
        self.special_columns: frozenset[str] = frozenset()
        self._widths: dict[tuple[Any, ...], dict[str, tuple[float, int]]] = {}  # text_widths, per interval

    def select_columns(self, names: list[str] | None) -> None:
        """Read only ``names`` (in the relation's order) from now on; None reads every column.

        A run reads the key, the timestamp, the model's inputs, passthrough columns and the columns its
        rules check: a wide column nobody uses is never extracted (nor counted in the chunk size).
        """
        self.read_columns = None if names is None else list(dict.fromkeys(names))

    def row_select(self) -> str:
        """The SELECT list of row reads: ``*``, or the selected columns in the relation's order."""
        if self.read_columns is None:
            return "*"
        wanted = set(self.read_columns)
        return ", ".join(quote(f.name) for f in self.schema() if f.name in wanted)

    def read_schema(self) -> pa.Schema:
        """The schema of what row reads return (``schema()`` narrowed to the selected columns)."""
        if self.read_columns is None:
            return self.schema()
        wanted = set(self.read_columns)
        return pa.schema([f for f in self.schema() if f.name in wanted])

    def interval_row(self, interval: DataInterval, select: str) -> tuple[Any, ...] | None:
        """The one row of ``SELECT <select>`` (aggregates) over the interval's rows; None when this source
        cannot run SQL over an interval (files). SQL sources override it."""
        return None

    def text_widths(self, interval: DataInterval) -> dict[str, tuple[float, int]]:
        """``{column: (mean bytes, longest bytes)}`` of the text and binary columns read, over the interval's
        rows: what chunk sizing (mean) and a source's own read limits (longest) need to know of long texts.

        One aggregate query (``interval_row``) per interval and set of columns read, cached; {} when no such
        column is read or the source cannot say (sizing then assumes short strings). A column with no value
        in the interval measures (0.0, 0).
        """
        fields = [f for f in self.read_schema() if is_text(f.type) and not f.name.startswith(SPECIAL_PREFIX)]
        if not fields:
            return {}
        key = (interval.start, interval.end, tuple(f.name for f in fields))
        if key not in self._widths:
            lengths = [self.text_length_sql(f) for f in fields]
            select = ", ".join(f"avg({x}) AS mean_{i}, coalesce(max({x}), 0) AS longest_{i}"
                               for i, x in enumerate(lengths))
            row = self.interval_row(interval, select)
            self._widths[key] = {} if row is None else {
                f.name: (float(row[2 * i] or 0), int(row[2 * i + 1] or 0)) for i, f in enumerate(fields)}
        return self._widths[key]

    def know_text_widths(self, interval: DataInterval, widths: dict[str, Any]) -> None:
        """Seed ``text_widths`` for the columns read with values measured elsewhere (the run plan measured
        them once for the whole interval), so a chunk reading one key range does not aggregate the interval
        again. Ignored unless ``widths`` covers every text column read."""
        fields = [f for f in self.read_schema() if is_text(f.type) and not f.name.startswith(SPECIAL_PREFIX)]
        if fields and all(f.name in widths for f in fields):
            key = (interval.start, interval.end, tuple(f.name for f in fields))
            self._widths[key] = {f.name: (float(widths[f.name][0]), int(widths[f.name][1])) for f in fields}

    def text_length_sql(self, field: pa.Field) -> str:
        """The SQL byte length of one value of text or binary column ``field`` (dialects override)."""
        return f"octet_length({quote(field.name)})"

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

    def timestamp_bounds(self) -> tuple[Any, Any]:
        """(min, max) of the timestamp column over the whole relation (None, None when empty or unknown);
        sources that can run SQL override it with one aggregate query."""
        return None, None

    @abstractmethod
    def schema(self) -> pa.Schema:
        """Columns and Arrow types of the source relation."""

    @property
    def timestamp_zone(self) -> str | None:
        """The declared zone of naive timestamps (``source.timestamp_timezone``); None: the business zone."""
        return self.cfg.timestamp_timezone

    def interval_bounds(self, interval: DataInterval) -> tuple[Any, Any]:
        """The interval's bounds as the timestamp column compares them.

        A zone-aware timestamp column gets aware UTC instants; a naive one, wall-clock times in
        ``source.timestamp_timezone`` (default: the business zone ``interval.zone``); a date column, the
        local dates of the bounds. Raises SourceError when the column is missing or of another type.
        """
        ts = self.cfg.timestamp_column
        if ts not in self.schema().names:
            raise SourceError(f"timestamp column {ts!r} not in source {self.describe!r}")
        kind = self.schema().field(ts).type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            return interval.start, interval.end
        naive = interval.naive(self.timestamp_zone or interval.zone)
        if pa.types.is_timestamp(kind):
            return naive
        if pa.types.is_date(kind):
            return naive[0].date(), naive[1].date()
        raise SourceError(f"timestamp column {ts!r} of source {self.describe!r} has type {kind}, "
                          "expected a timestamp or date")

    def day_counts_sql(self, ph: Callable[[int], str], days: int) -> str:
        """Generic SQL: rows per day of ``days`` consecutive intervals, as ``(bucket, n)`` rows (empty days
        absent). Parameters 1 .. days + 1 are the bounds in order; ``ph(n)`` renders placeholder n."""
        ts = quote(self.cfg.timestamp_column)
        cases = " ".join(f"WHEN {ts} < {ph(i + 2)} THEN {i}" for i in range(days))
        inner = self.interval_sql((ph(1), ph(days + 1)), f"CASE {cases} END AS bucket")
        return f"SELECT bucket, count(*) AS n FROM ({inner}) AS days GROUP BY bucket"  # noqa: S608

    def day_counts(self, intervals: list[DataInterval]) -> list[int]:
        """Rows in each of ``intervals`` (consecutive business days, in order).

        This fallback counts each interval; sources override it with one grouped ``day_counts_sql`` query.
        """
        return [self.count(interval) for interval in intervals]

    @abstractmethod
    def count(self, interval: DataInterval) -> int:
        """Rows in the interval."""

    @abstractmethod
    def batches(self, interval: DataInterval, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream the interval's rows in record batches of at most ``batch_rows`` rows."""

    def key_cuts_sql(self, ph: Callable[[int], str]) -> str:
        """Generic SQL: the largest key of each ntile bucket of the interval's non-null keys, in order.

        Parameters: 1 and 2 the interval bounds, 3 the number of buckets; ``ph(n)`` renders placeholder n.
        """
        key = quote(self.cfg.key_column)
        inner = self.interval_sql((ph(1), ph(2)), f"{key} AS k") + f" AND {key} IS NOT NULL"
        return (f"SELECT max(k) AS cut FROM (SELECT k, ntile({ph(3)}) OVER (ORDER BY k) AS b "  # noqa: S608
                f"FROM ({inner}) AS keys) AS buckets GROUP BY b ORDER BY b")

    def range_sql(self, ph: Callable[[int], str], interval_params: list[Any],
                  key_range: KeyRange) -> tuple[str, list[Any]]:
        """Generic SQL and parameters for the interval's rows in ``key_range``; ``ph(n)`` renders placeholder n."""
        key = quote(self.cfg.key_column)
        params = list(interval_params)
        conds = []
        for op, value in ((">", key_range.lo), ("<=", key_range.hi)):
            if value is not None:
                params.append(value)
                conds.append(f"{key} {op} {ph(len(params))}")
        if not conds:
            cond = "" if key_range.nulls else f"{key} IS NOT NULL"
        else:
            cond = " AND ".join(conds)
            cond = f"(({cond}) OR {key} IS NULL)" if key_range.nulls else cond
        sql = self.interval_sql((ph(1), ph(2)), self.row_select())
        return (f"{sql} AND {cond}" if cond else sql), params

    def key_cuts(self, interval: DataInterval, n_chunks: int) -> list[Any]:
        """Sorted, distinct key values splitting the interval's rows into up to ``n_chunks`` ranges.

        This fallback reads the interval's keys through ``batches``; sources override it with ``key_cuts_sql``.
        """
        logger.warning("source %s has no SQL key_cuts; reading every key of the interval", type(self).__name__)
        keys = [b.column(self.cfg.key_column) for b in self.batches(interval, 1_000_000)]
        if not keys:
            return []
        values = pc.drop_null(pa.chunked_array(keys)).combine_chunks()
        return cuts_from_maxima(_bucket_maxima(pc.take(values, pc.sort_indices(values)).to_pylist(), n_chunks))

    def range_batches(self, interval: DataInterval, key_range: KeyRange, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Stream the interval's rows in ``key_range``.

        This fallback filters ``batches``; sources override it to push the range into their SQL.
        """
        for batch in self.batches(interval, batch_rows):
            mask = key_mask(batch.column(self.cfg.key_column), key_range)
            yield batch.filter(mask)

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

    def latest_sql(self, placeholder: tuple[str, str], column: str, ts: str, key_sql: str | None = None) -> str:
        """Generic SQL: for each value of ``column`` occurring more than once in the interval, its latest
        ``ts`` when exactly one row has it; ``(k, t)`` rows (see ``latest_of_duplicates``). ``key_sql``: how
        the key is read (default: the column itself)."""
        col, t = quote(column), quote(ts)
        inner = self.interval_sql(placeholder, f"{key_sql or col} AS k, {t} AS t") + f" AND {col} IS NOT NULL"
        return (f"SELECT k, t FROM (SELECT k, t, count(*) OVER (PARTITION BY k) AS n, "  # noqa: S608 - quoted
                f"rank() OVER (PARTITION BY k ORDER BY t DESC NULLS LAST) AS r, "
                f"count(*) OVER (PARTITION BY k, t) AS tied FROM ({inner}) AS rows_) AS ranked "
                f"WHERE n > 1 AND r = 1 AND tied = 1 AND t IS NOT NULL")

    def latest_of_duplicates(self, interval: DataInterval | None, column: str, ts: str) -> pa.Table:
        """The row to keep of each duplicated ``column`` value under ``validation.duplicate_keys: keep_latest``:
        ``(k, t)`` = the value and its latest ``ts``, for values whose latest ``ts`` is held by exactly one row
        (a tie, or a NULL latest timestamp, keeps none: every row of that value is quarantined).

        This generic version streams the interval once with Arrow; SQL sources override it with ``latest_sql``.
        """
        parts = [b.select([column, ts]) for b in self.batches(interval, 1_000_000)]
        if not parts:
            return pa.table({"k": pa.array([], self.schema().field(column).type),
                             "t": pa.array([], self.schema().field(ts).type)})
        rows = pa.Table.from_batches(parts).rename_columns(["k", "t"]).filter(pc.is_valid(pc.field("k")))
        counts = rows.group_by("k").aggregate([("k", "count"), ("t", "max")])
        dup = counts.filter(pc.greater(counts["k_count"], 1))
        at_max = rows.join(dup.select(["k", "t_max"]), "k", join_type="inner").filter(pc.equal(pc.field("t"), pc.field("t_max")))
        tied = at_max.group_by("k").aggregate([("t", "count")])
        single = tied.filter(pc.equal(tied["t_count"], 1)).select(["k"])
        return at_max.join(single, "k", join_type="inner").select(["k", "t"])

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def key_mask(keys: pa.Array, key_range: KeyRange) -> pa.Array:
    """Boolean mask of ``keys`` inside ``key_range`` (NULL keys only when ``nulls``); as ``range_sql``."""
    mask = pc.is_valid(keys)
    if key_range.lo is not None:
        mask = pc.and_(mask, pc.greater(keys, pa.scalar(key_range.lo, keys.type)))
    if key_range.hi is not None:
        mask = pc.and_(mask, pc.less_equal(keys, pa.scalar(key_range.hi, keys.type)))
    mask = pc.fill_null(mask, False)
    return pc.or_(mask, pc.is_null(keys)) if key_range.nulls else mask


def cuts_from_maxima(maxima: list[Any]) -> list[Any]:
    """Cut points from the ordered ntile bucket maxima: every maximum but the last, without repeats."""
    cuts: list[Any] = []
    for value in maxima[:-1]:
        if not cuts or value != cuts[-1]:
            cuts.append(value)
    return cuts


def ntile_shape(rows: int, n_buckets: int) -> tuple[int, int, int]:
    """SQL ``ntile(n_buckets)`` over ``rows`` rows as ``(buckets, size, extra)``: ``buckets`` buckets, the
    first ``extra`` of them holding ``size + 1`` rows and the others ``size`` (PostgreSQL's ntile: the row
    count divided as evenly as possible, larger buckets first). With fewer rows than buckets, one bucket per
    row; no rows, no buckets (0, 0, 0). ``n_buckets`` below 1 counts as 1."""
    buckets = min(max(1, n_buckets), rows)
    if buckets <= 0:
        return 0, 0, 0
    size, extra = divmod(rows, buckets)
    return buckets, size, extra


def ntile_ends(rows: int, n_buckets: int) -> list[int]:
    """The 1-based position of the last row of each bucket of SQL ``ntile(n_buckets)`` over ``rows`` rows, in
    order (``ntile_shape``); [] for no rows."""
    buckets, size, extra = ntile_shape(rows, n_buckets)
    ends, end = [], 0
    for b in range(buckets):
        end += size + (1 if b < extra else 0)
        ends.append(end)
    return ends


def _bucket_maxima(values: list[Any], n_chunks: int) -> list[Any]:
    """The maximum of each ntile bucket of sorted ``values``, distributed as SQL ``ntile`` does."""
    return [values[end - 1] for end in ntile_ends(len(values), n_chunks)]
