"""The object-store options of this process's model store, suites and Data Docs (``s3://``), from an Airflow
Connection: credentials, endpoint, region, in memory only.

A module of its own, importing nothing heavy: ``connections.apply_connections`` sets them when a DAG task loads
its config, and the DAG file's parse must not import pyarrow.
"""

from __future__ import annotations

# The object-store options (credentials, endpoint, region) of the Airflow Connection named by
# ``model.store_connection_id`` (default ``results.staging_connection_id``), for the object-store folders this
# process opens besides staging: the model store, expectation suites, Data Docs. Set by
# ``connections.apply_connections`` (and handed to the worker processes a run spawns); never written anywhere.
_CONNECTION_OPTIONS: dict[str, str] = {}


def use_connection_options(options: dict[str, str] | None) -> None:
    """Make ``options`` (from ``connections.staging_options``; None or {} clears them) the object-store options
    of this process's object-store folders (``objects.location``), as the ``AWS_*`` environment is for the
    AWS SDK. Staging gets its own options from its ``ResultsConfig``."""
    global _CONNECTION_OPTIONS
    _CONNECTION_OPTIONS = {k: v for k, v in (options or {}).items() if v}


def connection_options() -> dict[str, str]:
    """A copy of the options set by :func:`use_connection_options` ({} when none)."""
    return dict(_CONNECTION_OPTIONS)
