"""The run's bounded-memory machinery: read-ahead of the next batch, NumPy quantiles of staged scores, and the
DuckDB memory limits of source reads and publish, which are lifted (never a failure) when a batch or a
publish needs more."""

from __future__ import annotations

import logging
import threading

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.models.store import ModelStore
from scoring.reports.summaries import score_quantiles
from scoring.run import pipeline
from scoring.run.chunks import prefetched
from scoring.storage.results import duckdb_store
from scoring.storage.sources import duckdb_source, open_source
from scoring.storage.staging import input_digest
from tests.conftest import write_config
from tests.helpers import published, source_day
from tests.quality.helpers import CLEAN_DAY, KEY, dirty_source

NOTE = 20_000  # characters per row of a passthrough text column


def _batches(n: int) -> list[pa.RecordBatch]:
    return [pa.record_batch({"k": np.arange(i * 10, i * 10 + 10), "x": np.random.default_rng(i).random(10)})
            for i in range(n)]


def test_prefetched_yields_every_batch_in_order_with_its_digest() -> None:
    batches = _batches(5)
    out = list(prefetched(iter(batches)))
    assert [b.equals(o) for o, (b, _) in zip(batches, out, strict=True)] == [True] * 5
    assert [d for _, d in out] == [input_digest(b) for b in batches]
    assert list(prefetched(iter([]))) == []


def test_prefetched_reads_the_next_batch_while_the_caller_holds_the_current_one() -> None:
    asked_for_second = threading.Event()

    def source():
        yield from _batches(1)
        asked_for_second.set()
        yield from _batches(2)[1:]

    reader = prefetched(source())
    next(reader)
    # The caller has not asked for batch 2 yet: it is being read already.
    assert asked_for_second.wait(timeout=30)
    assert len(list(reader)) == 1


def test_prefetched_raises_the_source_error_after_the_batches_before_it() -> None:
    def source():
        yield from _batches(2)
        raise ValueError("source went away")

    got = []
    with pytest.raises(ValueError, match="source went away"):
        for batch, _ in prefetched(source()):
            got.append(batch)
    assert len(got) == 2


def test_score_quantiles_equal_sql_percentile_cont(tmp_path) -> None:
    rng = np.random.default_rng(3)
    files = []
    for i in range(3):
        score = pa.array(rng.random(1001 + i), mask=rng.random(1001 + i) < 0.05)
        files.append(tmp_path / f"p{i}.parquet")
        pq.write_table(pa.table({"source_key": pa.array([str(j) for j in range(len(score))]), "score": score}),
                       files[-1])
    got = score_quantiles(files)
    with duckdb.connect() as con:
        want = con.execute("SELECT percentile_cont(0.1) WITHIN GROUP (ORDER BY score), "
                           "percentile_cont(0.5) WITHIN GROUP (ORDER BY score), "
                           "percentile_cont(0.9) WITHIN GROUP (ORDER BY score) FROM read_parquet($1)",
                           [[str(f) for f in files]]).fetchone()
    assert np.allclose([got["score_p10"], got["score_p50"], got["score_p90"]], want, rtol=0, atol=1e-12)
    pq.write_table(pa.table({"score": pa.nulls(3, pa.float64())}), tmp_path / "empty.parquet")
    assert score_quantiles([tmp_path / "empty.parquet"]) == dict.fromkeys(["score_p10", "score_p50", "score_p90"])


@pytest.fixture()
def noted_source(tmp_path, sample_db):
    """The sample source with a long text column, different in every row."""
    return dirty_source(tmp_path, sample_db, "ALTER TABLE loan_applications ADD COLUMN notes VARCHAR",
                        f"UPDATE loan_applications SET notes = repeat('n', {NOTE}) || CAST({KEY} AS VARCHAR)")


def test_a_batch_wider_than_the_source_limit_is_read_whole(tmp_path, noted_source, store, monkeypatch,
                                                            caplog) -> None:
    cfg = load_config(write_config(tmp_path, noted_source, store))
    interval = DataInterval.for_day(CLEAN_DAY)
    with duckdb.connect(str(noted_source), read_only=True) as con:
        expected = con.sql("SELECT * FROM loan_applications WHERE applied_at >= $1 AND applied_at < $2",
                           params=[interval.start.replace(tzinfo=None), interval.end.replace(tzinfo=None)]
                           ).to_arrow_table()
    monkeypatch.setattr(duckdb_source, "SOURCE_MEMORY_MIB", 8)
    # The limit is sized from the longest values of the columns read: no fallback needed.
    with caplog.at_level(logging.INFO, "scoring"), open_source(cfg.source) as source:
        assert source.widest_row_bytes(interval) > NOTE
        sized = pa.Table.from_batches(list(source.batches(interval, 100_000)))
    assert "default memory limit" not in caplog.text
    # When that bound is too small anyway, the first batch is read again under DuckDB's default limit.
    monkeypatch.setattr(duckdb_source.DuckDBSource, "widest_row_bytes", lambda self, interval: 1)
    with caplog.at_level(logging.INFO, "scoring"), open_source(cfg.source) as source:
        lifted = pa.Table.from_batches(list(source.batches(interval, 100_000)))
    assert "default memory limit" in caplog.text  # the limit was hit, and lifted
    assert sized.num_rows == lifted.num_rows == expected.num_rows > 0
    assert sized.equals(expected) and lifted.equals(expected)


def test_a_publish_over_the_write_limit_is_done_again_without_it(tmp_path, noted_source, store, monkeypatch,
                                                                 caplog) -> None:
    monkeypatch.setattr(duckdb_store, "WRITE_MEMORY_MIB", 8)
    cfg = load_config(write_config(tmp_path, noted_source, store, results={"passthrough": ["notes"]}))
    with caplog.at_level(logging.INFO, "scoring"):
        result = pipeline.run_day(cfg, CLEAN_DAY)
    assert "publishing again without the limit" in caplog.text
    src = source_day(noted_source, CLEAN_DAY)
    assert result.rows_in == len(src) == result.rows_scored + result.rows_rejected
    out = published(cfg.results.path, CLEAN_DAY).set_index("source_key")
    assert len(out) == result.rows_scored
    keys = src[KEY].astype("int64").astype(str)
    assert (out.loc[keys, "notes"].to_numpy() == src["notes"].to_numpy()).all()
    ms = ModelStore(store)
    mv = ms.get("loan_default", 1)
    own = ms.load(mv).predict_proba(src[[f["name"] for f in mv.features]])[:, 1]
    assert abs(out.loc[keys, "score"].to_numpy() - own).max() <= 1e-9
