"""Folders that may be local or on an object store (the model store, expectation suites, Data Docs), on the
same pyarrow filesystems as staging (:mod:`scoring.storage.stagefs`), plus the one primitive an object store
needs for a safe shared history: a **create-only write** (the object appears whole, or the call reports that
another writer created it first; it never overwrites).

- local: the bytes are written to a temporary file, fsynced, then hard-linked to the target name (``link``
  fails when the name exists), so a reader never sees a partial file and a loser never overwrites.
- ``s3://``: ``PutObject`` with ``If-None-Match: *`` (S3 conditional writes; also MinIO, R2, moto), through
  boto3, because pyarrow's S3 filesystem sends no conditional headers. Credentials and endpoint as
  :func:`scoring.storage.stagefs.s3_filesystem`: options, else the AWS SDK's environment (``AWS_*``).
- ``gs://`` and ``abfs://``: read and written through pyarrow's GcsFileSystem / AzureFileSystem (untested);
  create-only writes are refused with one line (pyarrow offers no precondition on them).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from scoring.config import STORE_SCHEMES, parse_location
from scoring.errors import ConfigError
from scoring.storage.object_options import connection_options
from scoring.storage.stagefs import CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S, StagePath, s3_filesystem


def is_uri(value: str | Path | StagePath) -> bool:
    """Whether ``value`` names an object store (``s3://``, ``gs://``, ``abfs://``) rather than a local path."""
    if isinstance(value, StagePath):
        return not value.is_local
    return isinstance(value, str) and urlsplit(value).scheme.lower() in STORE_SCHEMES


def location(value: str | Path | StagePath, key: str = "folder", options: dict[str, Any] | None = None) -> StagePath:
    """The folder ``value`` names, on its filesystem: a local path, or ``s3://bucket/prefix`` (``gs://``,
    ``abfs://`` through pyarrow's own URI parsing).

    Args:
        value: a path or a URI (non-secret options such as ``?endpoint_override=`` allowed in the query).
        key: the setting it comes from, for error messages.
        options: S3 options (credentials from a connection), overriding the URI's. Without them, the options
            of the process's object-store connection (``object_options.use_connection_options``; under Airflow,
            ``model.store_connection_id``, default ``results.staging_connection_id``) override the URI's, as a
            staging connection's do for staging.

    Raises:
        ConfigError: an unknown scheme, no bucket, or credentials in the URI.
    """
    if isinstance(value, StagePath):
        return value
    parsed = parse_location(value, key, STORE_SCHEMES)
    if isinstance(parsed, Path):
        return StagePath.local(parsed)
    parts = urlsplit(parsed)
    if parts.scheme.lower() == "s3":
        opts = dict(parse_qsl(parts.query))
        opts.update(connection_options() if options is None else options)
        return StagePath(s3_filesystem(opts), f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/"))
    fs, path = pafs.FileSystem.from_uri(parsed)  # gs:// and abfs://: untested
    return StagePath(fs, path.rstrip("/"))


def _s3_client(fs: pafs.S3FileSystem) -> Any:
    """A boto3 S3 client with the endpoint, region and explicit credentials ``fs`` was made with (read from
    its pickling state); what ``fs`` leaves to the AWS SDK's default chain, boto3's default chain finds."""
    import boto3
    from botocore.config import Config as BotoConfig

    try:
        opts = dict(fs.__reduce__()[1][0])
    except (TypeError, IndexError, AttributeError):
        opts = {}
    endpoint = opts.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3") \
        or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "://" not in endpoint:
        endpoint = f"{opts.get('scheme') or 'https'}://{endpoint}"
    creds = {"aws_access_key_id": opts.get("access_key"), "aws_secret_access_key": opts.get("secret_key"),
             "aws_session_token": opts.get("session_token")}
    config = BotoConfig(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=REQUEST_TIMEOUT_S,
                        retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint or None, region_name=opts.get("region") or fs.region or None,
                        config=config, **{k: v for k, v in creds.items() if v})


def create_only(target: StagePath, data: bytes) -> bool:
    """Create ``target`` holding ``data`` unless it exists: True when this call created it, False when
    another writer had (its content is left as it is).

    Raises:
        ConfigError: the filesystem offers no create-only write (``gs://``, ``abfs://`` through pyarrow).
        OSError: the write failed for another reason (permissions, network).
    """
    if target.is_local:
        folder = Path(target.path).parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target.path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    if target.fs.type_name != "s3":
        raise ConfigError(f"{target}: create-only writes (the model store's history) need s3:// or a local "
                          f"folder; pyarrow's {target.fs.type_name} filesystem cannot refuse an overwrite")
    bucket, _, key = target.path.partition("/")
    client = _s3_client(target.fs)
    _check_conditional_writes(client, bucket, str(target))
    return _put_if_absent(client, bucket, key, data, str(target))


def _put_if_absent(client: Any, bucket: str, key: str, data: bytes, label: str) -> bool:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except client.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            return False
        raise OSError(f"cannot write {label}: {code or status}: {exc}") from None
    except Exception as exc:  # botocore's connection and credential errors share no base with ClientError
        raise OSError(f"cannot write {label}: {type(exc).__name__}: {exc}") from None
    return True


_CHECKED: set[tuple[str, str]] = set()


def _check_conditional_writes(client: Any, bucket: str, label: str) -> None:
    """Once per process and bucket: refuse a server that ignores ``If-None-Match`` (it would let a second
    writer overwrite silently), by writing a probe object twice.

    Raises:
        ConfigError: the second create-only write of the probe succeeded.
    """
    where = (str(client.meta.endpoint_url), bucket)
    if where in _CHECKED:
        return
    key = f".scoring-probe/{uuid.uuid4().hex}"
    try:
        first = _put_if_absent(client, bucket, key, b"1", label)
        second = _put_if_absent(client, bucket, key, b"2", label)
    finally:
        try:
            client.delete_object(Bucket=bucket, Key=key)
        except Exception:  # noqa: BLE001 - a leftover probe object is harmless
            pass
    if first and second:
        raise ConfigError(f"{label}: the object store at {where[0]} ignores conditional writes (If-None-Match), so "
                          "a concurrent writer could overwrite the model store's history; use a server that "
                          "supports them (AWS S3, MinIO, R2) or a local model store")
    _CHECKED.add(where)
