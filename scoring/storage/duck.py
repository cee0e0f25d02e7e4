"""The one place the product opens DuckDB connections: nothing is ever downloaded or auto-loaded.

DuckDB installs and loads "known" extensions on first use by default (reading a SQLite file fetches the
sqlite extension from the internet, for instance). Every connection of the product is opened here with
both switches off, so a run never touches the network; a query that needs an extension fails with
DuckDB's own one-line error instead.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

NO_DOWNLOADS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def duck_connect(path: str | Path = ":memory:", read_only: bool = False, utc: bool = True
                 ) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with extension auto-install and auto-load disabled (session time zone UTC).

    Args:
        path: a database file, or ``:memory:``.
        read_only: open the file read-only (shared with other readers, excluded by a writer).
        utc: set the session time zone to UTC (False keeps DuckDB's default, for in-memory work).

    Raises:
        duckdb.Error: the file cannot be opened (locked, not a DuckDB file, ...); callers name the file.
    """
    con = duckdb.connect(str(path), read_only=read_only, config=dict(NO_DOWNLOADS))
    try:
        if utc:
            con.execute("SET TimeZone = 'UTC'")
    except BaseException:
        con.close()
        raise
    return con
