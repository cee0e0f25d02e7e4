"""Where the source and results live under a scheduler: the one mapping from connections to the config.

Outside Airflow the YAML config says where the data is. Under Airflow, a section with a ``connection_id``
takes its kind and location from that Airflow Connection (``AIRFLOW_CONN_<ID>`` environment variables
work). The DAG passes a lookup built on Airflow's hook; this module never imports Airflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from scoring.config import Config, ResultsConfig, SourceConfig
from scoring.errors import ConfigError
from scoring.storage.object_options import use_connection_options

logger = logging.getLogger(__name__)

KINDS = {"duckdb": "duckdb", "postgres": "postgres", "postgresql": "postgres"}


@dataclass(frozen=True)
class ConnectionInfo:
    """The fields of an Airflow Connection that locate a database."""

    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def postgres_url(conn: ConnectionInfo) -> str:
    """A ``postgresql://`` URL from a connection; extras (e.g. sslmode) become query parameters."""
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="") + (":" + quote(conn.password, safe="") if conn.password else "") + "@"
    host = (conn.host or "localhost") + (f":{conn.port}" if conn.port else "")
    query = urlencode({k: v for k, v in conn.extra.items() if isinstance(v, str | int)})
    return f"postgresql://{auth}{host}/{quote(conn.schema or '', safe='')}" + (f"?{query}" if query else "")


def _located(section: SourceConfig | ResultsConfig, conn: ConnectionInfo, base: Path | None) -> None:
    kind = KINDS.get(conn.conn_type.lower())
    if kind is None:
        raise ConfigError(f"connection {conn.conn_id!r} has type {conn.conn_type!r}; "
                          f"expected one of {', '.join(sorted(KINDS))}")
    section.kind = kind
    if kind == "duckdb":
        path = conn.extra.get("path") or conn.host
        if not path:
            raise ConfigError(f"connection {conn.conn_id!r} (duckdb) needs extra 'path' or host = the file path")
        path = Path(path)
        section.path = path if path.is_absolute() or base is None else (base / path).resolve()
    else:
        section.url = postgres_url(conn)


def staging_options(conn: ConnectionInfo, key: str = "results.staging_connection_id") -> dict[str, str]:
    """pyarrow ``S3FileSystem`` options from an Airflow Connection of type ``aws``: login/password (or extra
    ``aws_access_key_id``/``aws_secret_access_key``), extra ``aws_session_token``, ``endpoint_url`` (also
    ``service_config.s3.endpoint_url``) and ``region_name``.

    A connection without credentials leaves them to the AWS SDK's default chain (environment, instance role).

    Raises:
        ConfigError: the connection is not of type aws (``key`` names the setting).
    """
    if conn.conn_type.lower() not in ("aws", "s3"):
        raise ConfigError(f"connection {conn.conn_id!r} has type {conn.conn_type!r}; {key} needs an aws connection")
    extra = conn.extra
    s3 = (extra.get("service_config") or {}).get("s3") or {}
    options = {"access_key": conn.login or extra.get("aws_access_key_id"),
               "secret_key": conn.password or extra.get("aws_secret_access_key"),
               "session_token": extra.get("aws_session_token"),
               "endpoint_override": extra.get("endpoint_url") or s3.get("endpoint_url"),
               "region": extra.get("region_name")}
    return {k: str(v) for k, v in options.items() if v}


def apply_connections(cfg: Config, lookup: Callable[[str], ConnectionInfo]) -> Config:
    """A copy of ``cfg`` whose sections with a ``connection_id`` are located by that connection.

    Args:
        cfg: the loaded YAML configuration.
        lookup: returns the connection of an id (under Airflow: from Airflow's connections).

    The model store's object-store connection (``model.store_connection_id``, default
    ``results.staging_connection_id``) becomes this process's object-store options
    (``object_options.use_connection_options``): the model store, suites and Data Docs on ``s3://`` use it; a config
    without one clears them.

    Returns:
        ``cfg`` itself when no section names a connection, else an updated copy.
    """
    use_connection_options(None)
    if not cfg.source.connection_id and not cfg.results.connection_id and not cfg.results.staging_connection_id \
            and not cfg.model.store_connection_id:
        return cfg
    out = cfg.model_copy(deep=True)
    if out.results.staging_connection_id:
        out.results._staging_options = staging_options(lookup(out.results.staging_connection_id))
        logger.info("staging credentials from connection %r", out.results.staging_connection_id)
    if out.model.store_connection_id:
        use_connection_options(staging_options(lookup(out.model.store_connection_id), "model.store_connection_id"))
        logger.info("model store, suites and Data Docs credentials from connection %r", out.model.store_connection_id)
    elif out.results.staging_connection_id:
        use_connection_options(out.results._staging_options)
        logger.info("model store, suites and Data Docs credentials from connection %r (staging's)",
                    out.results.staging_connection_id)
    base = cfg.path.parent if cfg.path else None
    for name, section in (("source", out.source), ("results", out.results)):
        if section.connection_id:
            _located(section, lookup(section.connection_id), base)
            logger.info("%s located by connection %r (%s)", name, section.connection_id, section.kind)
    if out.source.kind == out.results.kind == "duckdb" and out.source.path == out.results.path:
        raise ConfigError("the source and results connections point at the same DuckDB file")
    return out


def predictions_asset_uri(cfg: Config) -> str:
    """A stable URI naming the configured predictions table, for the scheduler's data-aware triggers.

    Built from the YAML alone (it is needed when DAGs are parsed): the connection id when the results are
    located by a connection, else the DuckDB file or the PostgreSQL host and database (never credentials).
    """
    res, table = cfg.results, cfg.results.table
    if res.connection_id:
        return f"x-scoring://connection/{res.connection_id}/{res.db_schema}/{table}"
    if res.kind == "duckdb":
        return f"x-scoring://duckdb{Path(res.path).resolve()}/{table}"
    url = urlsplit(res.url or "")
    return f"x-scoring://postgres/{url.hostname or 'localhost'}:{url.port or 5432}{url.path}/{res.db_schema}/{table}"
