"""Labels that arrive after scoring (``labels`` section): one read of (key, label, observed-at) rows.

The table or SELECT is read once per ``scoring outcomes`` call, restricted to the labels observed on or after
a given moment (the oldest prediction they can belong to), with three columns only: memory is O(labels
observed in the window), never O(the label table). DuckDB files are opened read-only with external access
off; PostgreSQL reads run in a READ ONLY transaction. A key with several labels keeps the latest observed one
(a corrected outcome replaces the first).
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pyarrow as pa

from scoring.config import LabelsConfig
from scoring.dates import zone_info
from scoring.errors import ConfigError, SourceError
from scoring.sqlident import quote

logger = logging.getLogger(__name__)

LABEL_FRAME_COLUMNS = ("key", "label", "observed_at", "observed_day")
LABELS_TIMEOUT_S = 600  # a PostgreSQL labels read is cancelled after this long (statement_timeout)


def _relation(cfg: LabelsConfig) -> str:
    if cfg.table is not None:
        return ".".join(quote(p) for p in cfg.table.split("."))
    return f"({cfg.query}) AS labels_query"


def _select(cfg: LabelsConfig, placeholder: str, key_cast: str) -> str:
    k, y, t = quote(cfg.key_column), quote(cfg.label_column), quote(cfg.observed_at_column)
    return (f"SELECT CAST({k} AS {key_cast}) AS key, {y} AS label, {t} AS observed_at "  # noqa: S608 - quoted
            f"FROM {_relation(cfg)} WHERE {k} IS NOT NULL AND {y} IS NOT NULL "
            f"AND ({t} IS NULL OR {t} >= {placeholder})")


def _check_select(cfg: LabelsConfig) -> None:
    """``labels.query`` through the job-query guard (``query_guard.check_job_query`` on DuckDB's parse tree):
    one SELECT, no file or table function, no other catalog, no function revealing settings, paths or the
    environment; any table of the labels database. A PostgreSQL query DuckDB's parser cannot read runs
    unchecked but inside a READ ONLY transaction with ``statement_timeout`` (``_read_postgres``)."""
    from scoring.storage.sources.query_guard import check_job_query, parse_select

    if cfg.kind == "postgres":
        try:
            parse_select(cfg.query or "", "labels.query")
        except ConfigError:
            return  # PostgreSQL syntax DuckDB does not parse: the READ ONLY transaction is the guard there
    check_job_query(cfg.query or "", None, "labels.query")


def _read_duckdb(cfg: LabelsConfig, since: dt.datetime) -> pa.Table:
    import duckdb

    from scoring.storage.duck import duck_connect

    if cfg.path is None or not cfg.path.is_file():
        raise SourceError(f"labels database {str(cfg.path)!r} not found (labels.path)")
    try:
        con = duck_connect(cfg.path, read_only=True, sandboxed=True)
    except duckdb.Error as exc:
        raise SourceError(f"cannot open labels database {str(cfg.path)!r}: {str(exc).splitlines()[0]}") from None
    try:
        return con.sql(_select(cfg, "$1", "VARCHAR"), params=[since]).to_arrow_table()
    except duckdb.Error as exc:
        raise SourceError(f"labels {cfg.table or 'query'} in {str(cfg.path)!r}: "
                          f"{str(exc).strip().splitlines()[0]}") from None
    finally:
        con.close()


def _read_postgres(cfg: LabelsConfig, since: dt.datetime) -> pa.Table:
    from scoring.storage.pgconn import connect, error_line, resolve_url

    url = resolve_url(cfg.url, cfg.connection_id)
    con = connect(url, cfg.connect_timeout_s, "labels", SourceError)
    try:
        with con.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            cur.execute(f"SET LOCAL statement_timeout = {int(LABELS_TIMEOUT_S * 1000)}")
            cur.execute(_select(cfg, "$1", "text"), [since])
            return cur.fetch_arrow_table()
    except Exception as exc:  # noqa: BLE001 - every driver error becomes one line
        raise SourceError(f"labels {cfg.table or 'query'}: {error_line(exc, url)}") from None
    finally:
        try:
            con.rollback()
        finally:
            con.close()


def read_labels(cfg: LabelsConfig, since: dt.date, zone: str) -> pd.DataFrame:
    """The labels observed on business day ``since`` or later (and those without an observed-at time).

    Args:
        cfg: the ``labels`` section.
        since: the first business day whose labels are wanted (in ``zone``).
        zone: ``schedule.timezone``; naive observed-at times are read as local times of this zone, dates as
            that day.

    Returns:
        A frame with ``key`` (text, as ``source_key`` is published), ``label`` (as stored), ``observed_at``
        and ``observed_day`` (the business day, a ``datetime.date``; NaT/None when unknown), one row per key
        (the latest observed label).

    Raises:
        SourceError: the labels database cannot be opened or the table/query read (one line, names it).
        ConfigError: ``labels.query`` is not one SELECT.
    """
    if cfg.query is not None:
        _check_select(cfg)
    # A day of margin: a naive observed-at column compares with this bound in UTC, not in ``zone``; the join
    # applies the exact day rule afterwards (``scoring.models.outcomes.join_labels``).
    start = dt.datetime.combine(since - dt.timedelta(days=1), dt.time(), tzinfo=zone_info(zone))
    table = _read_duckdb(cfg, start) if cfg.kind == "duckdb" else _read_postgres(cfg, start)
    frame = table.to_pandas(types_mapper=None)
    frame["observed_day"] = observed_days(frame["observed_at"], zone)
    frame = frame.sort_values("observed_at", na_position="first", kind="stable")
    frame = frame.drop_duplicates("key", keep="last").reset_index(drop=True)
    logger.info("read %s labels observed since %s from %s", len(frame), since, cfg.table or "labels.query")
    return frame[list(LABEL_FRAME_COLUMNS)]


def observed_days(values: pd.Series, zone: str) -> pd.Series:
    """The business day (``datetime.date``, None when unknown) of each observed-at value: aware times are
    converted to ``zone``, naive ones read as local times of ``zone``, dates kept."""
    if values.empty:
        return pd.Series([], dtype=object)
    if not (pd.api.types.is_datetime64_any_dtype(values) or isinstance(values.dtype, pd.DatetimeTZDtype)):
        stamps = pd.to_datetime(values, errors="coerce")
    else:
        stamps = values
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert(zone)
    days = stamps.dt.date
    return days.where(stamps.notna(), None).astype(object)
