"""Errors that name the cause, ledger truth of a failed run, and the reader export of DuckDB results."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scoring.config import load_config
from scoring.errors import ModelStoreError, PublishError, SourceError, ValidationFailed
from scoring.models.store import ModelStore
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published
from tests.run.fault_helpers import assert_exact, expected_scores

ROOT = Path(__file__).resolve().parents[2]


def test_every_duckdb_connection_goes_through_the_no_download_helper() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "scoring").rglob("*.py")
                 if re.search(r"duckdb\.connect\(", p.read_text()) and p.name != "duck.py"]
    assert offenders == []


def test_failed_run_records_what_it_staged_not_what_it_published(cfg, sample_db: Path, store: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    good = pipeline.run_day(cfg, SCORE_DAY)

    def fail(*args: object, **kwargs: object) -> dict:
        raise ValidationFailed("injected quality gate failure")

    monkeypatch.setattr(pipeline, "conclude_quality", fail)
    with pytest.raises(ValidationFailed):
        pipeline.run_day(cfg, SCORE_DAY)
    last = ledger(cfg.results.path).iloc[-1]
    assert last["status"] == "failed" and last["rows_scored"] == 0 and last["rows_staged"] == good.rows_scored
    assert last["rows_in"] == last["rows_staged"] + last["rows_rejected"]
    steps = json.loads(last["details"]).get("steps", {})
    assert {"schema_s", "prepare_s", "score_s"} <= steps.keys()
    assert_exact(published(cfg.results.path, SCORE_DAY), expected_scores(sample_db, store, SCORE_DAY),
                 good.rows_in, good.rows_rejected)
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        row = con.sql("SELECT rows_scored, rows_staged FROM run_history WHERE is_latest").fetchall()
    assert row == [(0, good.rows_scored)]


def test_reader_export_serves_readers_without_holding_the_results_file(cfg, sample_db: Path, store: Path) -> None:
    first = pipeline.run_day(cfg, SCORE_DAY)
    catalog = cfg.results.path.with_name("results_export") / "catalog.duckdb"
    with duckdb.connect(str(catalog), read_only=True) as reader:  # held open across the next publish
        reader.execute(f"SET file_search_path = '{catalog.parent}'")  # views name files relative to it
        again = pipeline.run_day(cfg, SCORE_DAY)
        steps = json.loads(ledger(cfg.results.path).iloc[-1]["details"])["steps"]
        assert steps["publish_lock_wait_s"] < 0.5
        pred = reader.sql("SELECT * FROM predictions ORDER BY source_key").to_df()
        daily = reader.sql("SELECT run_id, rows_scored FROM daily_summary").fetchall()
        status = reader.sql("SELECT status FROM run_history ORDER BY started_at").fetchall()
    assert set(pred["run_id"]) == {again.run_id} and first.run_id != again.run_id
    assert_exact(pred, expected_scores(sample_db, store, SCORE_DAY), again.rows_in, again.rows_rejected)
    assert daily == [(again.run_id, again.rows_scored)] and status == [("success",), ("success",)]


def test_corrupted_results_database_is_refused_up_front(cfg) -> None:
    cfg.results.path.write_bytes(b"\0" * 8 + b"DUCK" + b"garbage" * 1000)
    with pytest.raises(PublishError, match=r"results database .*results\.duckdb") as info:
        pipeline.run_day(cfg, SCORE_DAY)
    assert "\n" not in str(info.value)
    assert not cfg.results.staging_dir.exists()


@pytest.mark.parametrize(("kind", "said"), [("parquet", "a Parquet file"), ("sqlite", "a SQLite database"),
                                            ("csv", "a text (CSV?) file")])
def test_non_duckdb_source_files_are_named(tmp_path: Path, store: Path, kind: str, said: str) -> None:
    path = tmp_path / f"source.{kind}"
    if kind == "parquet":
        pq.write_table(pa.table({"a": [1]}), path)
    elif kind == "sqlite":
        with sqlite3.connect(path) as con:
            con.execute("CREATE TABLE loan_applications (a INTEGER)")
    else:
        path.write_text("application_id,applied_at\n1,2026-03-07\n")
    cfg = load_config(write_config(tmp_path, path, store))
    with pytest.raises(SourceError, match=re.escape(said)):
        pipeline.run_day(cfg, SCORE_DAY)


def test_torn_and_corrupted_model_store_files(store: Path) -> None:
    ms = ModelStore(store)
    history = store / "loan_default" / "aliases.jsonl"
    history.write_text(history.read_text() + '{"alias": "champ')  # a torn last append
    assert ms.resolve("loan_default", "champion").version == 1
    ms.set_alias("loan_default", "challenger", 1)
    assert ms.aliases("loan_default") == {"champion": 1, "challenger": 1}
    history.write_text('garbage\n' + history.read_text())
    with pytest.raises(ModelStoreError, match=r"aliases\.jsonl' line 1 is corrupted"):
        ms.aliases("loan_default")
    (store / "loan_default" / "1" / "metadata.json").write_text('{"name": ')
    with pytest.raises(ModelStoreError, match=r"metadata\.json' is corrupted \(line 1"):
        ms.get("loan_default", 1)
