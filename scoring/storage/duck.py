"""The one place the product opens DuckDB connections: nothing is ever downloaded or auto-loaded.

DuckDB installs and loads "known" extensions on first use by default (reading a SQLite file fetches the
sqlite extension from the internet, for instance). Every connection of the product is opened here with
both switches off, so a run never touches the network; a query that needs an extension fails with
DuckDB's own one-line error instead.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import duckdb

NO_DOWNLOADS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
# DuckDB's buffer pool limits for the run's own connections (staged-file checks and summaries; source reads
# and the publish, which lift theirs when a batch or a publish needs more: never a failure from a limit of ours).
# DuckDB's default is 80% of RAM, and a day's scan then stays cached in the process:
# peak RSS grew with the day's size. Hash aggregates, sorts and joins spill to a private temporary folder
# beyond the limit (https://duckdb.org/docs/stable/configuration/overview: memory_limit, temp_directory).
RUN_MEMORY_MIB = 128
WRITE_MEMORY_MIB = 256
# A source connection streams one batch at a time and caches what it scans up to its limit: a small limit keeps
# the run's peak flat in the day's size. A batch wider than it allows lifts the limit (``DuckDBSource``).
SOURCE_MEMORY_MIB = 32
_SPILL = itertools.count()


def duck_connect(path: str | Path = ":memory:", read_only: bool = False, utc: bool = True,
                 memory_mib: int | None = None, sandboxed: bool = False,
                 settings: dict[str, str | bool] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with extension auto-install and auto-load disabled (session time zone UTC).

    Args:
        path: a database file, or ``:memory:``.
        read_only: open the file read-only (shared with other readers, excluded by a writer).
        utc: set the session time zone to UTC (False keeps DuckDB's default, for in-memory work).
        memory_mib: DuckDB's memory limit for this connection in MiB, with a private spill folder under the
            system temporary folder (DuckDB removes it when the connection closes); None keeps DuckDB's default.
        sandboxed: for untrusted SQL (job queries): ``enable_external_access = false`` (no file, network or
            extension access from SQL) and, once the time zone is set, ``lock_configuration = true``.
        settings: more start-up settings (e.g. ``storage_compatibility_version`` of a file being created).

    Raises:
        duckdb.Error: the file cannot be opened (locked, not a DuckDB file, ...); callers name the file.
    """
    config: dict[str, str | bool] = dict(NO_DOWNLOADS)
    if memory_mib:
        config["memory_limit"] = f"{memory_mib}MiB"
        config["temp_directory"] = spill_directory()
    config.update(settings or {})
    if sandboxed:
        config["enable_external_access"] = False
    con = duckdb.connect(str(path), read_only=read_only, config=config)
    try:
        if utc:
            con.execute("SET TimeZone = 'UTC'")
        if sandboxed:
            con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def spill_directory() -> str:
    """A private folder for one connection's spill files, under the system temporary folder (DuckDB creates
    it when it first spills and removes it when the connection closes)."""
    return os.path.join(tempfile.gettempdir(), f"scoring-duckdb-{os.getpid()}-{next(_SPILL)}")


def out_of_memory(exc: BaseException) -> bool:
    """Whether a DuckDB error is its memory limit: an OutOfMemoryException, or a COMMIT that failed for the
    same reason (DuckDB raises that as a TransactionException whose message says "failed to pin block")."""
    return isinstance(exc, duckdb.OutOfMemoryException) or (
        isinstance(exc, duckdb.Error) and "failed to pin block" in str(exc))
