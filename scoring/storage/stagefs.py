"""Where staged chunks live: a local folder or an object store (``s3://bucket/prefix``), through pyarrow's
filesystems, so ``staging.Stage`` and the publishers read and write both the same way.

Credentials never come from the config file: for S3 they come from an Airflow Connection of type ``aws``
(``results.staging_connection_id``: login/password = access key id/secret, extra ``endpoint_url``,
``region_name``; under Airflow, the model store, suites and Data Docs use it too unless
``model.store_connection_id`` names another) or from the environment the AWS SDK reads (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``/``AWS_DEFAULT_REGION``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from scoring.config import parse_staging_dir
from scoring.errors import ConfigError

READ_BATCH = 65_536
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 120.0
def s3_filesystem(options: dict[str, Any] | None = None) -> pafs.S3FileSystem:
    """An S3 filesystem from ``options`` (from a connection or the URI), else the environment.

    Args:
        options: any of access_key, secret_key, session_token, region, endpoint_override, scheme.
    """
    opts = {k: v for k, v in (options or {}).items() if v}
    endpoint = opts.pop("endpoint_override", None) or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["endpoint_override"] = endpoint
    opts.setdefault("region", os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    return pafs.S3FileSystem(connect_timeout=CONNECT_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S,
                             retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3), **opts)


@dataclass(frozen=True)
class StagePath:
    """A file or folder of the staging area: a pyarrow filesystem and a path on it (``bucket/key`` on S3,
    an absolute POSIX path locally). ``str()`` gives the user-facing form (path or ``s3://`` URI)."""

    fs: pafs.FileSystem
    path: str

    @classmethod
    def local(cls, path: str | Path) -> StagePath:
        return cls(pafs.LocalFileSystem(), str(Path(path).absolute()))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def __truediv__(self, name: str) -> StagePath:
        return StagePath(self.fs, f"{self.path.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return self.path if self.is_local else f"{self.fs.type_name}://{self.path}"

    def __fspath__(self) -> str:
        if not self.is_local:
            raise TypeError(f"{self} is not a local path")
        return self.path

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def parent(self) -> StagePath:
        return StagePath(self.fs, str(PurePosixPath(self.path).parent))

    def with_name(self, name: str) -> StagePath:
        return self.parent / name

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def children(self, recursive: bool = False) -> list[pafs.FileInfo]:
        """What is under this folder ([] when it does not exist)."""
        return self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive))

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path, compression=None) as fh:
            return fh.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_bytes(self, data: bytes) -> None:
        """Write the whole object: atomic on S3 (an upload appears complete or not at all) and locally
        (a temporary file renamed over the target)."""
        if self.is_local:
            self.fs.create_dir(self.parent.path, recursive=True)
            tmp = self.with_name(self.name + ".tmp")
            with self.fs.open_output_stream(tmp.path, compression=None) as fh:
                fh.write(data)
            self.fs.move(tmp.path, self.path)
        else:
            with self.fs.open_output_stream(self.path, compression=None) as fh:
                fh.write(data)

    def delete_tree(self) -> None:
        """Remove this folder and everything under it (nothing when it does not exist)."""
        if self.info().type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)

    def delete_file(self) -> None:
        if self.info().type == pafs.FileType.File:
            self.fs.delete_file(self.path)

    def parquet(self) -> pq.ParquetFile:
        """The Parquet file, opened for streaming reads (a ranged-read handle on S3)."""
        return pq.ParquetFile(self.fs.open_input_file(self.path))


def staging_root(results: Any) -> StagePath:
    """The staging area of a ``ResultsConfig``: its ``staging_dir`` on the filesystem it names.

    Raises:
        ConfigError: the URI is invalid or names credentials.
    """
    value = parse_staging_dir(results.staging_dir)
    if isinstance(value, Path):
        return StagePath.local(value)
    parts = urlsplit(value)
    options = dict(parse_qsl(parts.query))
    options.update(getattr(results, "staging_options", None) or {})
    return StagePath(s3_filesystem(options), f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/"))


def local_staging(results: Any, what: str) -> Path:
    """``staging_dir`` when it is local; ConfigError naming ``what`` needs it local otherwise."""
    value = parse_staging_dir(results.staging_dir)
    if not isinstance(value, Path):
        raise ConfigError(f"{what} needs a local results.staging_dir; {value!r} is an object store "
                          "(use a local path, or a separate config, for this command)")
    return value


def as_location(value: str | Path | StagePath) -> StagePath:
    return value if isinstance(value, StagePath) else StagePath.local(value)


def all_local(files: Sequence[str | Path | StagePath]) -> bool:
    return all(not isinstance(f, StagePath) or f.is_local for f in files)


def read_schema(file: str | Path | StagePath) -> pa.Schema:
    return as_location(file).parquet().schema_arrow


def batch_reader(files: Sequence[str | Path | StagePath], columns: Sequence[str] | None = None
                 ) -> pa.RecordBatchReader:
    """The rows of several staged Parquet files as one stream (a batch of at most ``READ_BATCH`` rows at
    a time, so memory stays bounded whatever the total), under the union of their schemas; a column a file
    lacks is NULL (files staged before a column existed).

    Args:
        files: staged Parquet files (local paths or ``StagePath``), read in order.
        columns: keep only these columns (all when None).
    """
    located = [as_location(f) for f in files]
    schema = pa.unify_schemas([f.parquet().schema_arrow for f in located], promote_options="permissive")
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])

    def batches() -> Iterator[pa.RecordBatch]:
        for file in located:
            handle = file.parquet()
            names = [n for n in schema.names if n in handle.schema_arrow.names]
            for batch in handle.iter_batches(batch_size=READ_BATCH, columns=names):
                yield pa.RecordBatch.from_arrays(
                    [batch.column(f.name).cast(f.type) if f.name in batch.schema.names
                     else pa.nulls(batch.num_rows, f.type) for f in schema], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def duck_scan(con: Any, name: str, files: Sequence[str | Path | StagePath], param: str,
              union: bool = True) -> tuple[str, list[Any]]:
    """A DuckDB table expression over staged Parquet files, and the parameter value it binds.

    Local files: ``read_parquet(<param>[, union_by_name = true])`` bound to the file list (DuckDB's own
    parallel reader). Object-store files: a streaming Arrow reader registered on ``con`` as ``name``, bound
    to nothing, so DuckDB never needs its httpfs extension (no extension is ever downloaded) and memory
    stays one batch per file read. A registered reader is consumed by one query: call again for each.
    """
    if all_local(files):
        options = ", union_by_name = true" if union else ""
        return f"read_parquet({param}{options})", [[str(f) for f in files]]
    con.register(name, batch_reader(files))
    return name, []
