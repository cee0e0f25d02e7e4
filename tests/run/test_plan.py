"""The steps the DAG calls (scoring/run/plan.py), without Airflow: deterministic key-range chunks, reuse, publish,
the ledger outcome and the connection mapping."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.errors import (
    ConfigError,
    ModelStoreError,
    PublishError,
    SchemaError,
    SourceError,
    ValidationFailed,
)
from scoring.run import pipeline
from scoring.run import plan as steps
from scoring.run.runplan import RunPlan, plan_id_of
from scoring.storage.connections import ConnectionInfo, apply_connections, postgres_url, predictions_asset_uri
from scoring.storage.sources import open_source
from scoring.storage.sources.base import Source, key_ranges
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published

INTERVAL = DataInterval.for_day(SCORE_DAY)
COMPARED = ["day", "source_key", "score", "label", "model_name", "model_version"]


@pytest.fixture()
def messy_source(tmp_path: Path, sample_db: Path) -> Path:
    """The sample with NULL keys and repeated keys on the scored day (keys are not always clean)."""
    db = tmp_path / "messy.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"ATTACH '{sample_db}' AS s (READ_ONLY)")
        con.execute("CREATE TABLE loan_applications AS SELECT * FROM s.loan_applications")
        con.execute("UPDATE loan_applications SET application_id = NULL WHERE application_id % 50 = 7")
        con.execute("UPDATE loan_applications SET application_id = application_id - application_id % 4 "
                    "WHERE application_id % 10 < 3")
    return db


def _rows(batches: list[pa.RecordBatch]) -> list[str]:
    return sorted(json.dumps(r, default=str) for b in batches for r in b.to_pylist())


@pytest.mark.parametrize("as_text", [False, True], ids=["integer keys", "string keys"])
def test_key_ranges_cover_every_row_exactly_once(tmp_path: Path, messy_source: Path, store: Path,
                                                 as_text: bool) -> None:
    source = {"table": None, "query": "SELECT * REPLACE (CAST(application_id AS VARCHAR) AS application_id) "
              "FROM loan_applications"} if as_text else {}
    cfg = load_config(write_config(tmp_path, messy_source, store, source=source))
    with open_source(cfg.source) as src:
        everything = _rows(list(src.batches(INTERVAL, 10_000)))
        assert any('"application_id": null' in r for r in everything)
        for n in (1, 3, 7, 50):
            cuts = src.key_cuts(INTERVAL, n)
            assert all(a < b for a, b in zip(cuts, cuts[1:], strict=False))
            assert len(cuts) == n - 1 if n < 10 else n // 2 < len(cuts) < n  # repeats merge a few buckets
            assert cuts == Source.key_cuts(src, INTERVAL, n)  # SQL ntile == the generic fallback
            chunks = []
            for key_range in key_ranges(cuts):
                rows = _rows(list(src.range_batches(INTERVAL, key_range, 64)))
                assert rows == _rows(list(Source.range_batches(src, INTERVAL, key_range, 64)))
                chunks.append(rows)
            assert sorted(r for c in chunks for r in c) == everything
            if n == 7:
                sizes = [len(c) for c in chunks]
                assert max(sizes) - min(sizes) <= 0.2 * max(sizes)  # repeated keys move a few rows only


def test_plan_round_trips_through_json_and_reads_plans_in_flight(cfg) -> None:
    plan = steps.plan_run(cfg, INTERVAL, rows_per_chunk=150, key="manual__1")
    assert isinstance(plan, RunPlan) and len(plan.chunks) == 4
    with pytest.raises(FrozenInstanceError):
        plan.rows = 1  # type: ignore[misc]
    text = json.dumps(plan.to_json())  # what an XCom stores
    assert RunPlan.from_json(json.loads(text)) == plan
    assert plan_id_of({k: v for k, v in json.loads(text).items() if k != "plan_id"}) == plan.plan_id
    assert plan.engine == {"requested": cfg.scoring.engine, "engine": "native",
                           "fallback": "version not compiled (scoring models compile)"} \
        if cfg.scoring.engine != "native" else {"requested": "native", "engine": "native"}
    old = {k: v for k, v in plan.to_json().items() if k not in ("quality_inputs", "engine")}  # an older plan
    read = RunPlan.from_json(old)
    assert read.quality_inputs is None and read.engine["engine"] == "native" and read.chunks == plan.chunks
    first = steps.score_planned_chunk(cfg, old, 0)  # the steps take the older JSON as they take a plan
    assert first["rows_in"] > 0 and not first["reused"]
    # A plan made before chunks were read in batches: its ranges are read in batches of the chunk size.
    older = {k: v for k, v in plan.to_json().items() if k != "read_rows"}
    assert plan.read_rows == 150 and RunPlan.from_json(older).read_rows is None
    assert plan_id_of({k: v for k, v in older.items() if k != "plan_id"}) != plan.plan_id
    assert [steps.score_planned_chunk(cfg, older, i)["parts"] for i in range(4)] == [1, 1, 1, 1]
    assert steps.publish_plan(cfg, older)["rows_in"] == 600


def test_plan_is_deterministic_and_sized_from_the_chunk_size(cfg) -> None:
    first = steps.plan_run(cfg, INTERVAL, rows_per_chunk=150, key="scheduled__2026-03-07T00:00:00+00:00").to_json()
    again = steps.plan_run(cfg, INTERVAL, rows_per_chunk=150, key="scheduled__2026-03-07T00:00:00+00:00").to_json()
    assert first["plan_id"] == again["plan_id"] and first["chunks"] == again["chunks"]
    assert json.loads(json.dumps(first)) == first
    assert (first["rows"], len(first["chunks"]), first["model"]) == (600, 4, {"name": "loan_default", "version": 1})
    assert first["run_key"] == "scheduled__2026-03-07T00_00_00_00_00"
    assert steps.plan_run(cfg, INTERVAL, rows_per_chunk=200, key="x").to_json()["plan_id"] != \
        steps.plan_run(cfg, INTERVAL, rows_per_chunk=150, key="x").to_json()["plan_id"]
    assert len(steps.plan_run(cfg, INTERVAL).to_json()["chunks"]) == 1  # the memory budget fits the whole day
    empty = steps.plan_run(cfg, DataInterval.for_day(SCORE_DAY + dt.timedelta(days=300))).to_json()
    assert empty["rows"] == 0 and len(empty["chunks"]) == 1
    with pytest.raises(ModelStoreError):
        steps.plan_run(cfg, INTERVAL, version=9)


def test_planned_steps_publish_what_the_cli_publishes_and_reuse_staged_chunks(tmp_path: Path, sample_db: Path,
                                                                            store: Path) -> None:
    (tmp_path / "cli").mkdir()
    cli = load_config(write_config(tmp_path / "cli", sample_db, store))
    cfg = load_config(write_config(tmp_path, sample_db, store))
    pipeline.run_day(cli, SCORE_DAY)
    plan = steps.plan_run(cfg, INTERVAL, rows_per_chunk=97, key="manual__1").to_json()
    indexes = steps.validate_plan(cfg, plan)
    assert indexes == list(range(7))
    first = [steps.score_planned_chunk(cfg, plan, i) for i in indexes[:3]]
    again = [steps.score_planned_chunk(cfg, plan, i) for i in indexes]  # a retry: 0-2 are reused
    assert [r["reused"] for r in first] == [False] * 3
    assert [r["reused"] for r in again] == [True] * 3 + [False] * 4
    assert [r["predictions_sha256"] for r in again[:3]] == [r["predictions_sha256"] for r in first]
    assert not cfg.results.path.exists()  # chunks never write to the results database
    counts = steps.publish_plan(cfg, plan, again)
    assert (counts["rows_in"], counts["rows_scored"], counts["chunks"], counts["chunks_reused"]) == (600, 600, 7, 3)
    pd.testing.assert_frame_equal(published(cfg.results.path)[COMPARED], published(cli.results.path)[COMPARED])
    assert not (cfg.results.staging_dir / "loan_default" / SCORE_DAY.isoformat() / "manual__1").exists()
    # Publishing the same plan again (a publish retry after a lost heartbeat) writes nothing.
    repeat = steps.publish_plan(cfg, plan, again)
    assert repeat["already_published"] and repeat["run_id"] == counts["run_id"]
    assert len(published(cfg.results.path)) == 600 and list(ledger(cfg.results.path)["status"]) == ["success"]


def test_a_different_plan_never_mixes_with_staged_chunks(cfg) -> None:
    a = steps.plan_run(cfg, INTERVAL, rows_per_chunk=300, key="run").to_json()
    b = steps.plan_run(cfg, INTERVAL, rows_per_chunk=200, key="run").to_json()
    steps.score_planned_chunk(cfg, a, 0)
    assert steps.plan_stage(cfg, a).root != steps.plan_stage(cfg, b).root
    assert steps.score_planned_chunk(cfg, b, 0)["reused"] is False
    with pytest.raises(Exception, match=r"chunks \[1\] of plan"):
        steps.publish_plan(cfg, a)
    assert ledger(cfg.results.path).empty and not published(cfg.results.path).shape[0]


def test_record_outcome_writes_one_failed_row_naming_the_failed_tasks(cfg) -> None:
    plan = steps.plan_run(cfg, INTERVAL, key="run").to_json()
    ok = steps.record_outcome(cfg, INTERVAL, plan, {"plan": "success", "publish": "success"})
    assert ok["status"] == "success" and not cfg.results.path.exists()
    states = {"plan": "success", "validate": "success", "score_chunk_0": "success", "score_chunk_1": "failed",
              "publish": "upstream_failed"}
    out = steps.record_outcome(cfg, INTERVAL, plan, states, {"airflow_run_id": "run"})
    assert out == {"status": "failed", "failed": ["score_chunk_1"], "run_id": out["run_id"]}
    row = ledger(cfg.results.path).iloc[-1]
    assert (row["status"], row["model_version"], row["trigger"]) == ("failed", 1, "airflow")
    assert row["error"].startswith("tasks failed: score_chunk_1;")
    assert json.loads(row["details"])["plan_id"] == plan["plan_id"]
    # A failed publish recorded its own row; planning failures have no plan.
    assert steps.record_outcome(cfg, INTERVAL, plan, {"publish": "failed"})["recorded_by"] == "publish"
    steps.record_outcome(cfg, INTERVAL, None, {"plan": "failed", "validate": "upstream_failed"})
    runs = ledger(cfg.results.path)
    assert len(runs) == 2 and runs.iloc[-1]["error"].startswith("tasks failed: plan;")
    assert pd.isna(runs.iloc[-1]["model_version"])


def test_transient_and_permanent_errors() -> None:
    assert all(steps.is_transient(e) for e in (SourceError("x"), PublishError("x"), OSError("x")))
    assert not any(steps.is_transient(e) for e in (SchemaError("x"), ConfigError("x"), ModelStoreError("x"),
                                                   ValidationFailed("x")))


def test_connections_locate_the_source_and_results(tmp_path: Path, cfg) -> None:
    assert apply_connections(cfg, lambda _: pytest.fail("no lookup without connection ids")) is cfg
    cfg.source.connection_id, cfg.results.connection_id = "scoring_source", "scoring_results"
    conns = {
        "scoring_source": ConnectionInfo("scoring_source", "duckdb", extra={"path": str(tmp_path / "in.duckdb")}),
        "scoring_results": ConnectionInfo("scoring_results", "postgres", host="db.internal", port=5433,
                                          login="scorer", password="p@ss/word", schema="analytics",
                                          extra={"sslmode": "require"}),
    }
    out = apply_connections(cfg, conns.__getitem__)
    assert (out.source.kind, out.source.path) == ("duckdb", tmp_path / "in.duckdb")
    assert out.results.kind == "postgres"
    assert out.results.url == "postgresql://scorer:p%40ss%2Fword@db.internal:5433/analytics?sslmode=require"
    assert cfg.results.kind == "duckdb"  # the loaded config is not modified
    relative = apply_connections(cfg, lambda c: ConnectionInfo(c, "duckdb", host=f"{c}.duckdb"))
    assert relative.source.path == cfg.path.parent / "scoring_source.duckdb"
    with pytest.raises(ConfigError, match="connection 'scoring_source' has type 'mysql'"):
        apply_connections(cfg, lambda c: ConnectionInfo(c, "mysql"))
    with pytest.raises(ConfigError, match="same DuckDB file"):
        apply_connections(cfg, lambda c: ConnectionInfo(c, "duckdb", host="/data/one.duckdb"))
    assert postgres_url(ConnectionInfo("c", "postgres", host="h", schema="d")) == "postgresql://h/d"
    assert predictions_asset_uri(cfg) == "x-scoring://connection/scoring_results/scoring/predictions"


def test_plan_sizes_chunks_from_the_recorded_width_without_unpickling(cfg, monkeypatch) -> None:
    from scoring.models.scorer import encoded_width
    from scoring.models.store import METADATA, ModelStore

    store = ModelStore(cfg.model.store)
    mv = store.resolve(cfg.model.name, "champion")
    assert mv.meta["encoded_width"] == encoded_width(store.load(mv), len(mv.features)) > len(mv.features)
    interval = DataInterval.for_day(SCORE_DAY)
    loads = []
    real_load = ModelStore.load
    monkeypatch.setattr(ModelStore, "load", lambda self, v: loads.append(v.version) or real_load(self, v))
    planned = steps.plan_run(cfg, interval).to_json()
    assert loads == []  # the plan never unpickles the model
    # A version registered before the width was recorded: the plan loads the model, and sizes the same.
    meta = json.loads((mv.path / METADATA).read_text())
    del meta["encoded_width"]
    (mv.path / METADATA).write_text(json.dumps(meta))
    again = steps.plan_run(cfg, interval).to_json()
    assert loads == [mv.version] and again["rows_per_chunk"] == planned["rows_per_chunk"]
    assert again["chunks"] == planned["chunks"]


def test_a_chunk_task_reads_only_its_key_range(tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG's ``score_chunk`` task (``score_planned_chunk``) issues the same source queries on a day ten
    times larger: no whole-day aggregate (the duplicate keys' GROUP BY, the text widths) is repeated per chunk;
    the plan measured them once. The chunk's published scores still equal the CLI's (the other DAG tests)."""
    from sample_data.generate import generate
    from scoring.storage.sources.duckdb_source import DuckDBSource

    queries: list[str] = []
    real = DuckDBSource._run

    def recording(self, sql, params=None):
        queries.append(sql)
        return real(self, sql, params)

    monkeypatch.setattr(DuckDBSource, "_run", recording)
    seen: dict[int, list[str]] = {}
    for rows in (300, 3000):
        folder = tmp_path / str(rows)
        folder.mkdir()
        generate(folder / "src.duckdb", SCORE_DAY, 1, rows, seed=5)
        cfg = load_config(write_config(folder, folder / "src.duckdb", store, chunking={"rows_per_chunk": 100}))
        plan = steps.plan_run(cfg, INTERVAL).to_json()
        assert plan["rows"] == rows and len(plan["chunks"]) >= 3
        assert "application_id" in plan["quality_inputs"]["duplicates"]  # the suite's uniqueness rule on the key
        queries.clear()
        manifest = steps.score_planned_chunk(cfg, plan, 1)
        assert 0 < manifest["rows_in"] < rows and not manifest["reused"]
        seen[rows] = list(queries)
    assert len(seen[300]) == len(seen[3000]) > 0
    for sql in seen[3000]:
        assert "group by" not in sql.lower() and "avg(" not in sql.lower() and "count(" not in sql.lower(), sql


def test_a_chunk_task_streams_its_range_in_batches_read_ahead_and_publishes_what_the_cli_publishes(
        tmp_path: Path, sample_db: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk task reads its key range as a stream of ``read_rows`` batches through the chunk loop: the first
    batch while the model loads, each next one in the loop's prefetch thread while the current one is scored;
    each batch is staged as a part of the chunk. A task that fails mid-chunk keeps the parts it staged, its
    retry reuses them (same rows), and publish gives exactly what ``scoring run`` publishes."""
    import threading

    from scoring.errors import SourceError
    from scoring.run import chunks as loop
    from scoring.storage.sources.duckdb_source import DuckDBSource

    (tmp_path / "cli").mkdir()
    cli = load_config(write_config(tmp_path / "cli", sample_db, store))
    cfg = load_config(write_config(tmp_path, sample_db, store))
    pipeline.run_day(cli, SCORE_DAY)
    plan = steps.plan_run(cfg, INTERVAL, rows_per_chunk=300, key="manual__1", batch_rows=40).to_json()
    assert plan["read_rows"] == 40 and len(plan["chunks"]) == 2

    reads: list[tuple[str, int]] = []
    fail_after: list[int] = [3]  # the first attempt's source fails after three batches
    real_read = DuckDBSource.range_batches

    def recording(self, interval, key_range, batch_rows):
        for n, batch in enumerate(real_read(self, interval, key_range, batch_rows)):
            if fail_after and n == fail_after[0]:
                fail_after.clear()
                raise SourceError("connection lost")
            reads.append((threading.current_thread().name, batch.num_rows))
            yield batch

    scored: list[int] = []
    real_process = loop.process_chunk

    def counting(model, batch, index, *args, **kwargs):
        scored.append(index)
        return real_process(model, batch, index, *args, **kwargs)

    monkeypatch.setattr(DuckDBSource, "range_batches", recording)
    monkeypatch.setattr(loop, "process_chunk", counting)
    with pytest.raises(SourceError, match="connection lost"):
        steps.score_planned_chunk(cfg, plan, 0)
    assert len(scored) == 3  # three parts staged before the source failed
    reads.clear()
    scored.clear()
    out = [steps.score_planned_chunk(cfg, plan, i) for i in steps.validate_plan(cfg, plan)]
    assert sum(r["rows_in"] for r in out) == 600 and [r["reused"] for r in out] == [False, False]
    assert [r["parts"] for r in out] == [-(-r["rows_in"] // 40) for r in out]  # 40-row batches, as planned
    assert max(n for _, n in reads) == 40 and len(reads) == sum(r["parts"] for r in out)
    assert len(scored) == len(reads) - 3  # the retry reused the three parts staged from the same rows
    # Per task, the first batch is read beside the model load, every next one by the chunk loop's prefetch.
    first = [0, out[0]["parts"]]
    assert all(name.startswith("range-read") for i, (name, _) in enumerate(reads) if i in first)
    assert all(name.startswith("scoring-prefetch") for i, (name, _) in enumerate(reads) if i not in first)
    again = [steps.score_planned_chunk(cfg, plan, i) for i in range(2)]
    assert [r["reused"] for r in again] == [True, True] and len(reads) == sum(r["parts"] for r in out)
    assert [r["predictions_sha256"] for r in again] == [r["predictions_sha256"] for r in out]
    counts = steps.publish_plan(cfg, plan, again)
    assert (counts["rows_in"], counts["chunks"], counts["chunks_reused"]) == (600, 2, 2)
    pd.testing.assert_frame_equal(published(cfg.results.path)[COMPARED], published(cli.results.path)[COMPARED])


def test_parts_of_a_chunk_never_collide_with_chunks_staged_whole(tmp_path: Path) -> None:
    """A plan in flight may hold chunks staged whole by an earlier version beside chunks staged in parts; each
    is read back as what it is, and a chunk whose parts are not all staged and verified is not staged."""
    from scoring.storage.staging import PART_STRIDE, Stage, part_index

    stage = Stage(tmp_path / "stage")
    preds = pa.table({"source_key": ["a"], "score": [0.5]})
    empty = pa.table({"source_key": pa.array([], pa.string())})
    whole = [stage.write(i, 1, preds, empty) for i in range(3)]  # chunks 0-2 staged whole
    parts = [stage.write(part_index(1, p), 2, preds, empty) for p in range(3)]
    assert [m.index for m in parts] == [2 * PART_STRIDE, 2 * PART_STRIDE + 1, 2 * PART_STRIDE + 2]
    assert stage.completed_chunk(1) == [whole[1]]  # its parts are not recorded yet: the whole chunk stands
    stage.write_parts(1, parts)
    assert stage.completed_chunk(1) == parts and stage.completed_chunk(0) == [whole[0]]
    assert stage.completed(1) is None  # chunk 1 is no longer one file
    assert sorted(p.name for p in Path(str(stage.root)).glob("part-*.json")) == [
        "part-00001-00000.json", "part-00001-00001.json", "part-00001-00002.json"]
    assert json.loads((Path(str(stage.root)) / "chunk-00001.json").read_text())["rows_in"] == 6
    Path(str(stage.prediction_files([parts[1]])[0])).write_bytes(b"torn")
    assert stage.completed_chunk(1) is None  # a part fails verification: the chunk is redone
    assert stage.completed_chunk(5) is None


def test_an_empty_day_stages_one_empty_part_and_publishes_what_the_cli_publishes(tmp_path: Path, sample_db: Path,
                                                                                 store: Path) -> None:
    """A day without rows is one chunk whose range streams no batch: it stages one empty part, so publish
    finds the chunk staged and records the same empty run the CLI records."""
    day = SCORE_DAY + dt.timedelta(days=300)
    (tmp_path / "cli").mkdir()
    cli = load_config(write_config(tmp_path / "cli", sample_db, store))
    cfg = load_config(write_config(tmp_path, sample_db, store))
    expected = pipeline.run_day(cli, day)
    plan = steps.plan_run(cfg, DataInterval.for_day(day), key="empty").to_json()
    [chunk] = [steps.score_planned_chunk(cfg, plan, i) for i in steps.validate_plan(cfg, plan)]
    assert (chunk["rows_in"], chunk["parts"]) == (0, 1)
    counts = steps.publish_plan(cfg, plan, [chunk])
    assert (counts["rows_in"], counts["rows_scored"]) == (expected.rows_in, expected.rows_scored) == (0, 0)
    assert [r["status"] for r in ledger(cfg.results.path).to_dict("records")] == ["success"]
