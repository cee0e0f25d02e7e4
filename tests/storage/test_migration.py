"""Results databases written before the model contract, opened with today's code: ``ensure_schema`` migrates
them in place (old rows intact, new columns usable) and is a no-op the second time."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import shutil
import threading
from pathlib import Path

import duckdb
import psycopg
import pytest

from scoring.config import ResultsConfig
from scoring.reports.summaries import summarize
from scoring.storage.results import open_results
from tests.storage.contract_helpers import expected, published, run_record, staged, write
from tests.storage.legacy_pg_schema import LEGACY_DDL, LEGACY_ROWS

LEGACY_DUCKDB = Path(__file__).parent.parent / "data" / "results_before_model_contract.duckdb.gz"
OLD_COLUMNS = ["source_key", "score", "label", "model_name", "model_version", "run_id", "day", "scored_at"]
NEW_DAY = dt.date(2026, 3, 8)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _duckdb_rows(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [tuple(r.values()) for r in con.sql(sql).to_arrow_table().to_pylist()]  # fetchall needs pytz


def test_duckdb_file_of_main_migrates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "results.duckdb"
    with gzip.open(LEGACY_DUCKDB) as src, path.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    cols = ", ".join(OLD_COLUMNS)
    old = _duckdb_rows(path, f"SELECT {cols} FROM predictions ORDER BY day, source_key")  # noqa: S608
    old_stats = _duckdb_rows(path, "SELECT * FROM prediction_stats ORDER BY day")
    assert len(old) == 119 and len(old_stats) == 2

    store = open_results(ResultsConfig(kind="duckdb", path=path, staging_dir=tmp_path / "staging"))
    store.ensure_schema()
    described = {r[0]: r[2] for r in _duckdb_rows(path, "DESCRIBE predictions")}
    assert described["label"] == "YES" and described["source_key"] == "NO"
    assert {"predicted_class", "probabilities"} <= set(described)
    assert "task" in {r[0] for r in _duckdb_rows(path, "DESCRIBE prediction_stats")}
    assert "task" in {r[0] for r in _duckdb_rows(path, "DESCRIBE daily_summary")}

    before = _sha(path)
    store.ensure_schema()  # nothing to do: no DDL, the file is not even rewritten
    assert _sha(path) == before

    rows = staged("multiclass")
    files = [write(tmp_path / "chunk.parquet", rows)]
    run = run_record("new-run", NEW_DAY, "loan_default")
    store.start_run(run)
    store.publish(run, files, [], extra=summarize(run, files, [], task="multiclass"))
    assert _duckdb_rows(path, f"SELECT {cols} FROM predictions WHERE day < $1 ORDER BY day, source_key"  # noqa: S608
                        .replace("$1", f"DATE '{NEW_DAY}'")) == old
    assert published(store, NEW_DAY, rows.column_names, "loan_default") == expected(rows)
    assert _duckdb_rows(path, "SELECT * EXCLUDE (task) FROM prediction_stats WHERE day < DATE '2026-03-08' "
                        "ORDER BY day") == old_stats
    assert _duckdb_rows(path, "SELECT day, task FROM daily_summary ORDER BY day") == [
        (dt.date(2026, 3, 6), None), (dt.date(2026, 3, 7), None), (NEW_DAY, "multiclass")]


def _pg_snapshot(url: str, schema: str) -> list[tuple]:
    with psycopg.connect(url) as con:
        return con.execute(
            "SELECT c.relname, c.relkind, c.oid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
            "WHERE n.nspname = %s ORDER BY 1, 4", [schema]).fetchall()


@pytest.mark.postgres
def test_postgres_schema_of_main_migrates_in_place(tmp_path: Path, pg_url: str, pg_schema: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(pg_url, autocommit=True) as con:
        for statement in (*LEGACY_DDL, *LEGACY_ROWS):
            con.execute(statement.format(schema=f'"{pg_schema}"'))
        old = con.execute(f'SELECT {", ".join(OLD_COLUMNS)} FROM "{pg_schema}".predictions '  # noqa: S608
                          "ORDER BY source_key").fetchall()
    store = open_results(ResultsConfig(kind="postgres", url=pg_url, schema=pg_schema,
                                       staging_dir=tmp_path / "staging"))
    store.ensure_schema()
    with psycopg.connect(pg_url) as con:
        info = dict(con.execute("SELECT column_name, is_nullable FROM information_schema.columns "
                                "WHERE table_schema = %s AND table_name = 'predictions'", [pg_schema]).fetchall())
        assert info["label"] == "YES" and {"predicted_class", "probabilities"} <= set(info)
        assert con.execute("SELECT task FROM " f'"{pg_schema}".daily_summary').fetchall() == [(None,)]

    # Second call: no DDL. A BI reader holding its locks in an open transaction is not waited for (DDL would
    # need an exclusive lock and fail on the lock timeout), and the catalog is unchanged.
    snapshot = _pg_snapshot(pg_url, pg_schema)
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=2000")
    with psycopg.connect(pg_url) as reader:
        reader.execute(f'SELECT count(*) FROM "{pg_schema}".predictions')  # noqa: S608
        reader.execute(f'SELECT count(*) FROM "{pg_schema}".daily_summary')  # noqa: S608
        done = threading.Event()
        worker = threading.Thread(target=lambda: (store.ensure_schema(), done.set()))
        worker.start()
        worker.join(30)
        assert done.is_set(), "ensure_schema failed or waited for the reader's locks"
        reader.rollback()
    assert _pg_snapshot(pg_url, pg_schema) == snapshot

    rows = staged("regression")
    files = [write(tmp_path / "chunk.parquet", rows)]
    run = run_record("new-run", NEW_DAY, "loan_default")
    store.start_run(run)
    store.publish(run, files, [], extra=summarize(run, files, [], task="regression"))
    with psycopg.connect(pg_url) as con:
        assert con.execute(f'SELECT {", ".join(OLD_COLUMNS)} FROM "{pg_schema}".predictions '  # noqa: S608
                           "WHERE day < %s ORDER BY source_key", [NEW_DAY]).fetchall() == old
        assert con.execute(f'SELECT day, task FROM "{pg_schema}".daily_summary ORDER BY day').fetchall() == [  # noqa: S608
            (dt.date(2026, 3, 6), None), (NEW_DAY, "regression")]
    assert published(store, NEW_DAY, rows.column_names, "loan_default") == expected(rows)
