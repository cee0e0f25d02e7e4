"""The reader export of a DuckDB results file: per-partition Parquet plus a read-only catalog of views.

DuckDB lets one process hold a database file for writing, and a reader (an analyst's ``duckdb -readonly``,
a BI tool) excludes that writer for as long as it stays connected. Readers therefore never open the results
file: each publish exports its (day, model) partition of every partitioned table as one Parquet file
(written aside, then renamed over the old one), the ledger as ``runs/all/runs.parquet``, and keeps
``catalog.duckdb``, a small database holding only views over those files (the tables under their own
names, and the report views). A reader opens the catalog read-only; the writer never opens it again
after creating it (a changed catalog is built aside and renamed over), so nothing a reader does can
block a run, and a reader sees each partition either before or after a publish, never half of it.

Readable by older clients and relocatable: the catalog is written in DuckDB's storage format ``v1.0.0``
(``storage_compatibility_version``; storage version 64, which DuckDB 1.0 and later open: BI tools and
notebooks bundling DuckDB 1.1 read it), and its views name the Parquet files relative to the catalog's
folder. DuckDB resolves a relative path against ``file_search_path`` (default: the working directory), so a
reader opens the catalog from its folder (``cd <export_dir> && duckdb -readonly catalog.duckdb``) or sets
``SET file_search_path = '<export_dir>'``; a copied or mounted export then reads its own files, never the
writer's. The Parquet files are plain Parquet (any reader).

Layout: ``<export_dir>/<table>/<model>/<day>.parquet``, ``<export_dir>/<table>/_schema/empty.parquet`` (the
table's columns, so a view over a table with no partition yet still has them), ``<export_dir>/catalog.duckdb``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from pathlib import Path

import duckdb

from scoring.sqlident import quote
from scoring.storage.duck import duck_connect

logger = logging.getLogger(__name__)

CATALOG = "catalog.duckdb"
CATALOG_STORAGE = "v1.0.0"  # DuckDB storage version 64: opened by DuckDB 1.0+ (tested with 1.1.3)
RUNS_TABLE = "runs"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _copy(con: duckdb.DuckDBPyConnection, select: str, target: Path) -> None:
    """COPY ``select`` to ``target`` as Parquet, atomically (written aside, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    # zstd level 1, not DuckDB's default 3: a 2,000,000-row predictions partition exported in 0.59-0.67 CPU s
    # instead of 0.70-0.73, and the file is no bigger (16.2 vs 16.4 MB): the values are mostly unique keys and
    # scores, which the higher level does not compress better. Any zstd reader reads either.
    con.execute(f"COPY ({select}) TO {_literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)")
    os.replace(tmp, target)


def export_partition(con: duckdb.DuckDBPyConnection, export_dir: Path, tables: list[str], day: dt.date,
                     model: str, record: bool = False) -> None:
    """Export the (day, model) partition of each of ``tables`` and the ledger, then make sure of the catalog.

    Args:
        con: an open connection to the results file (after the publish COMMIT).
        export_dir: the export folder.
        tables: partitioned tables to export (they have ``day`` and ``model_name``).
        day, model: the partition; a partition without rows has its file removed.
        record: ``tables[0]`` is the predictions table: record the run its partition now holds
            (``record_exported``), last, so a crash before leaves the partition marked stale.

    Raises:
        OSError, duckdb.Error: the export could not be written (the caller logs it; the results are intact).
    """
    where = f"day = DATE {_literal(day.isoformat())} AND model_name = {_literal(model)}"
    for table in tables:
        target = export_dir / table / model / f"{day.isoformat()}.parquet"
        rows = con.execute(f"SELECT count(*) FROM {quote(table)} WHERE {where}").fetchone()[0]  # noqa: S608
        if rows:
            _copy(con, f"SELECT * FROM {quote(table)} WHERE {where}", target)  # noqa: S608 - quoted
        else:
            target.unlink(missing_ok=True)
    export_runs(con, export_dir)
    ensure_catalog(con, export_dir)
    if record and tables:
        run = con.execute(f"SELECT max(run_id) FROM {quote(tables[0])} WHERE {where}").fetchone()[0]  # noqa: S608
        record_exported(export_dir, day, model, run)


STATE_DIR = "_exported"  # <export_dir>/_exported/<model>/<day>.run: the run a partition's files hold


def _state_file(export_dir: Path, day: dt.date, model: str) -> Path:
    return export_dir / STATE_DIR / model / f"{day.isoformat()}.run"


def record_exported(export_dir: Path, day: dt.date, model: str, run_id: str | None) -> None:
    """Record which run the exported (day, model) partition holds (written aside and renamed; None: empty)."""
    target = _state_file(export_dir, day, model)
    if run_id is None:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(run_id)
    os.replace(tmp, target)


def exported_runs(export_dir: Path) -> dict[tuple[dt.date, str], str]:
    """``{(day, model): run_id}`` as the export says it holds."""
    found: dict[tuple[dt.date, str], str] = {}
    root = export_dir / STATE_DIR
    if not root.is_dir():
        return found
    for file in root.glob("*/*.run"):
        try:
            found[(dt.date.fromisoformat(file.stem), file.parent.name)] = file.read_text().strip()
        except (ValueError, OSError):
            continue
    return found


def published_runs(con: duckdb.DuckDBPyConnection, table: str) -> dict[tuple[dt.date, str], str]:
    """``{(day, model): run_id}`` of the partitions the predictions table holds (one run per partition)."""
    rows = con.execute(f"SELECT day, model_name, max(run_id) FROM {quote(table)} GROUP BY ALL").fetchall()  # noqa: S608
    return {(r[0], r[1]): r[2] for r in rows}


def diverged(con: duckdb.DuckDBPyConnection, export_dir: Path, table: str) -> list[tuple[dt.date, str]]:
    """Partitions whose export does not hold the run the results hold (stale, missing or left over)."""
    published, exported = published_runs(con, table), exported_runs(export_dir)
    keys = set(published) | set(exported)
    return sorted(k for k in keys if published.get(k) != exported.get(k))


def export_days(con: duckdb.DuckDBPyConnection, export_dir: Path, tables: list[str], model: str,
                start: dt.date, end: dt.date) -> None:
    """Export the (day, model) partitions of ``start..end`` of tables written a window at a time outside a run
    (``outcomes``, ``label_coverage``; after their COMMIT), then the ledger and the catalog: one file per
    day with rows (a day without rows has its file removed), the layout of ``export_partition``.

    Raises:
        OSError, duckdb.Error: the export could not be written (the results are intact).
    """
    for table in tables:
        if table == RUNS_TABLE:
            continue
        days = {r[0] for r in con.execute(f"SELECT DISTINCT day FROM {quote(table)} WHERE model_name = $1 "  # noqa: S608
                                          "AND day BETWEEN $2 AND $3", [model, start, end]).fetchall()}
        for n in range((end - start).days + 1):
            day = start + dt.timedelta(days=n)
            target = export_dir / table / model / f"{day.isoformat()}.parquet"
            if day in days:
                where = f"day = DATE {_literal(day.isoformat())} AND model_name = {_literal(model)}"
                _copy(con, f"SELECT * FROM {quote(table)} WHERE {where}", target)  # noqa: S608 - quoted
            else:
                target.unlink(missing_ok=True)
    export_runs(con, export_dir)
    ensure_catalog(con, export_dir)


def export_runs(con: duckdb.DuckDBPyConnection, export_dir: Path) -> None:
    """Rewrite the ledger export (small: one row per attempt)."""
    _copy(con, f"SELECT * FROM {quote(RUNS_TABLE)}", export_dir / RUNS_TABLE / "all" / "runs.parquet")  # noqa: S608


def _base_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                      "current_schema() AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]


def ensure_catalog(con: duckdb.DuckDBPyConnection, export_dir: Path) -> bool:
    """Create ``catalog.duckdb`` (views over the exported files) when missing or outdated; True if (re)built.

    The catalog depends only on the export folder and the set of tables and views, not on the data, so it is
    rebuilt only when those change: built aside and renamed over the old file, which open readers keep.
    """
    from scoring.storage.results.views import DUCKDB, view_statements

    tables = _base_tables(con)
    statements = []
    for table in tables:
        glob = f"{table}/*/*.parquet"  # relative to the catalog's folder (file_search_path)
        statements.append(f"CREATE VIEW {quote(table)} AS SELECT * FROM read_parquet({_literal(glob)}, "  # noqa: S608 - quoted
                          "union_by_name = true)")
    statements += view_statements(DUCKDB, quote, "drift" in tables, None)
    digest = hashlib.sha256("\n".join([CATALOG_STORAGE, *statements]).encode()).hexdigest()[:16]
    catalog, marker = export_dir / CATALOG, export_dir / ".catalog.sha"
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = "
            "current_schema() ORDER BY table_name, ordinal_position").fetchall():
        columns.setdefault(table, []).append((column, kind))
    for table in tables:  # the columns of each table, so an empty view still has them
        schema_file = export_dir / table / "_schema" / "empty.parquet"
        # rewritten when the table's columns changed (or the file is gone): not at every publish (14 COPYs)
        shape = hashlib.sha256(repr(columns.get(table)).encode()).hexdigest()[:16]
        shape_file = schema_file.with_name(".columns.sha")
        if schema_file.is_file() and shape_file.is_file() and shape_file.read_text() == shape:
            continue
        _copy(con, f"SELECT * FROM {quote(table)} LIMIT 0", schema_file)  # noqa: S608 - quoted
        shape_file.write_text(shape)
    if catalog.is_file() and marker.is_file() and marker.read_text() == digest:
        return False
    tmp = export_dir / f".{CATALOG}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    settings = {"storage_compatibility_version": CATALOG_STORAGE, "file_search_path": str(export_dir)}
    with duck_connect(tmp, settings=settings) as cat:
        for statement in statements:
            cat.execute(statement)
    os.replace(tmp, catalog)
    marker.write_text(digest)
    logger.info("reader catalog %s (re)built: %s tables, report views", catalog, len(tables))
    return True
