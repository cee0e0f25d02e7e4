"""The rows of an on-demand job: a Parquet or CSV file, or one SELECT against the configured source.

Both are ``Source`` readers whose "interval" is the whole input (a job is not a business day), so the
run's gate, chunked scoring and staging read them as they read a day. A query runs on a read-only
connection (DuckDB opens the source file read-only: a job cannot modify it), must be exactly one SELECT,
takes its values as bound parameters only, and runs in the sandbox of ``query_guard``: only the allowed
tables, no file, network, setting or catalog access, and no value in its error messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from scoring.errors import ConfigError, SourceError
from scoring.storage.duck import duck_connect
from scoring.storage.sources.base import Source
from scoring.storage.sources.duckdb_source import check_duckdb_file
from scoring.storage.sources.query_guard import check_job_query, redact_values, tables_read
from scoring.storage.sources.rebatch import rebatch

if TYPE_CHECKING:
    from scoring.config import JobsConfig, SourceConfig
    from scoring.dates import DataInterval

logger = logging.getLogger(__name__)

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def input_path(text: str) -> Path:
    """A job input or output location as a local path: a path, or a ``file://`` URI (what staging accepts).

    Raises:
        ConfigError: another URI scheme.
    """
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    if "://" in text:
        raise ConfigError(f"{text!r}: only local paths and file:// URIs are supported")
    return Path(text)


def file_format(path: Path) -> str:
    """``parquet`` or ``csv`` from the file name; ConfigError for another suffix."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{str(path)!r}: a job file must be Parquet (.parquet) or CSV (.csv)")
    return fmt


def csv_text_columns(inferred: pa.Schema) -> list[str]:
    """The columns of a CSV read as text: every column Arrow's inference would make a number or a string.

    Inference is not used for them: it turns ``000042`` into 42 and a code ``0001E5`` into 100.0. Booleans,
    dates and timestamps keep their inferred types (their text has one reading). The run parses a text column
    the model reads as a number row by row, quarantining a value that does not parse (column and value).
    """
    t = pa.types
    return [f.name for f in inferred
            if t.is_integer(f.type) or t.is_floating(f.type) or t.is_decimal(f.type) or t.is_string(f.type)
            or t.is_large_string(f.type)]


class FileInput(Source):
    """Every row of one Parquet or CSV file, streamed in batches (pyarrow datasets)."""

    def __init__(self, cfg: SourceConfig, path: Path) -> None:
        super().__init__(cfg)
        import pyarrow.csv as pa_csv
        import pyarrow.dataset as ds

        self.path = path
        if not path.is_file():
            raise SourceError(f"job input {str(path)!r} not found")
        fmt = file_format(path)
        try:
            # CSV: an empty field is NULL, as in pandas.read_csv and as a Parquet file of the same rows holds it.
            fmt_obj = ds.CsvFileFormat(convert_options=pa_csv.ConvertOptions(strings_can_be_null=True)) \
                if fmt == "csv" else fmt
            self.dataset = ds.dataset(str(path), format=fmt_obj)
            self._schema = self.dataset.schema
            if fmt == "csv":
                # A CSV field is text: numbers, codes and ids are read as written (leading zeros kept) and the
                # run types them from the model's signature, row by row (see ``csv_text_columns``).
                text = csv_text_columns(self._schema)
                options = pa_csv.ConvertOptions(strings_can_be_null=True,
                                                column_types=dict.fromkeys(text, pa.string()))
                self.dataset = ds.dataset(str(path), format=ds.CsvFileFormat(convert_options=options))
                self._schema = self.dataset.schema
                self.text_columns = frozenset(text)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"job input {str(path)!r} is not a readable {fmt} file: "
                              f"{redact_values(str(exc))}") from None

    @property
    def describe(self) -> str:
        return str(self.path)

    def schema(self) -> pa.Schema:
        return self._schema

    def count(self, interval: DataInterval | None = None) -> int:
        return int(self.dataset.count_rows())

    def batches(self, interval: DataInterval | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            yield from rebatch(self.dataset.to_batches(batch_size=batch_rows), batch_rows)
        except pa.ArrowInvalid as exc:
            raise SourceError(f"reading job input {str(self.path)!r} failed: "
                              f"{redact_values(str(exc))}") from None


def check_select(query: str) -> None:
    """Refuse anything but exactly one SELECT statement, naming what was found.

    Raises:
        ConfigError: not parseable, several statements, or another kind of statement.
    """
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise ConfigError(f"job query does not parse: {redact_values(str(exc))}") from None
    if len(statements) != 1:
        raise ConfigError(f"a job query must be exactly one SELECT statement, got {len(statements)} statements")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ConfigError(f"a job query must be a SELECT statement, got {kind.name}")


def default_allowed_tables(cfg: SourceConfig) -> list[str]:
    """What a job query may read when ``jobs.allowed_tables`` is not set: the configured source table, or the
    tables the configured source query reads."""
    if cfg.table:
        return [cfg.table]
    return tables_read(cfg.query) if cfg.query else []


def check_query_job(cfg: SourceConfig, query: str, allowed_tables: list[str] | None = None,
                    jobs: JobsConfig | None = None) -> None:
    """Everything a job query is refused for before it runs (at submit and again in the worker).

    Raises:
        ConfigError: not one SELECT, outside the sandbox (``check_job_query``), or a PostgreSQL source without
            ``jobs.postgres_url`` (the role its queries run as; ``pg_job_query``).
    """
    check_select(query)
    if cfg.kind != "duckdb" and (jobs is None or not jobs.postgres_url):
        raise ConfigError("query jobs on a PostgreSQL source run as a read-only role: set jobs.postgres_url "
                          "(see docs/security.md), or export the rows to Parquet and submit the file")
    check_job_query(query, default_allowed_tables(cfg) if allowed_tables is None else allowed_tables)


def check_file_job(path: Path) -> None:
    """A job input file refused at submit: not Parquet/CSV by name, missing, or not a regular file.

    Raises:
        ConfigError: one line naming the file.
    """
    file_format(path)
    if not path.is_file():
        raise ConfigError(f"job input {str(path)!r} not found (or not a regular file)")


class QueryInput(Source):
    """The rows of one SELECT run against the configured DuckDB source, on a sandboxed read-only connection."""

    def __init__(self, cfg: SourceConfig, query: str, params: dict[str, Any] | None = None,
                 allowed_tables: list[str] | None = None) -> None:
        super().__init__(cfg)
        check_query_job(cfg, query, allowed_tables)
        path = cfg.path
        if path is None or not path.is_file():
            raise SourceError(f"source database {str(path)!r} not found")
        check_duckdb_file(path)
        self.query, self.params = query, dict(params or {})
        try:
            self.con = duck_connect(path, read_only=True, sandboxed=True)
        except duckdb.Error as exc:
            raise SourceError(f"cannot open source database {str(path)!r}: {redact_values(str(exc))}") from None
        self._schema: pa.Schema | None = None

    @property
    def describe(self) -> str:
        return "job query"

    def _run(self, select: str) -> duckdb.DuckDBPyRelation:
        try:
            return self.con.sql(f"SELECT {select} FROM ({self.query}) AS job",  # noqa: S608 - one checked SELECT
                                params=self.params or None)
        except duckdb.Error as exc:
            raise SourceError(f"job query failed: {redact_values(str(exc))}") from None

    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._schema = self._run("* ").limit(0).to_arrow_table().schema
        return self._schema

    def count(self, interval: DataInterval | None = None) -> int:
        return int(self._run("count(*)").fetchall()[0][0])

    def batches(self, interval: DataInterval | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            yield from rebatch(self._run("*").to_arrow_reader(batch_rows), batch_rows)
        except duckdb.Error as exc:
            raise SourceError(f"job query failed: {redact_values(str(exc))}") from None

    def close(self) -> None:
        self.con.close()


def open_job_input(cfg: SourceConfig, path: str | None = None, query: str | None = None,
                   params: dict[str, Any] | None = None, allowed_tables: list[str] | None = None,
                   jobs: JobsConfig | None = None) -> Source:
    """The reader of a job's rows: ``path`` (Parquet/CSV) or ``query`` (one SELECT on the source, reading only
    ``allowed_tables``; None: ``default_allowed_tables``).

    Raises:
        ConfigError: neither or both given, a bad suffix or a query that is not one SELECT.
        SourceError: the file or source is missing or unreadable.
    """
    if (path is None) == (query is None):
        raise ConfigError("a job takes exactly one input: --input PATH or --query SELECT")
    if path is not None:
        return FileInput(cfg, input_path(path))
    if cfg.kind != "duckdb":
        from scoring.storage.sources.pg_job_query import PgQueryInput

        check_query_job(cfg, query or "", allowed_tables, jobs)
        if params:
            raise ConfigError("--param is not supported for query jobs on a PostgreSQL source; write the values "
                              "into the query")
        assert jobs is not None  # checked above
        return PgQueryInput(cfg, query or "", jobs,
                            default_allowed_tables(cfg) if allowed_tables is None else allowed_tables)
    return QueryInput(cfg, query or "", params, allowed_tables)
