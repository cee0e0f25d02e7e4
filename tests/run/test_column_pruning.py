"""A run reads only the columns it needs: a wide column nobody uses is never extracted nor sized for."""

from __future__ import annotations

import json

from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.models.store import ModelStore
from scoring.run import pipeline
from scoring.run.sizing import MIN_ROWS, chunk_rows, row_bytes
from scoring.storage.sources import open_source
from tests.conftest import write_config
from tests.helpers import published, source_day
from tests.quality.helpers import CLEAN_DAY, KEY, dirty_source, last_run, quarantine

WIDE = 100_000  # characters per row of the unused column


def test_a_wide_unused_column_is_not_read(tmp_path, sample_db, store) -> None:
    db = dirty_source(tmp_path, sample_db, "ALTER TABLE loan_applications ADD COLUMN notes VARCHAR",
                      f"UPDATE loan_applications SET notes = repeat('x', {WIDE})",
                      f"UPDATE loan_applications SET {KEY} = NULL WHERE {KEY} % 97 = 3")
    cfg = load_config(write_config(tmp_path, db, store, chunking={"memory_budget_mib": 32}))
    with open_source(cfg.source) as source:
        full = source.schema()
        batches = list(source.batches(DataInterval.for_day(CLEAN_DAY), 100))
    assert "notes" in full.names and "notes" in batches[0].schema.names  # a plain read still has it
    result = pipeline.run_day(cfg, CLEAN_DAY)
    src = source_day(db, CLEAN_DAY)
    assert result.rows_in == len(src) == result.rows_scored + result.rows_rejected
    q = quarantine(cfg.results.path, result.run_id)
    assert len(q) == src[KEY].isna().sum() > 0 and "notes" not in json.loads(q["row_json"].iloc[0])
    out = published(cfg.results.path, CLEAN_DAY).set_index("source_key")
    ms = ModelStore(store)
    mv = ms.get("loan_default", 1)
    scored = src[src[KEY].notna()]
    own = ms.load(mv).predict_proba(scored[[f["name"] for f in mv.features]])[:, 1]
    assert abs(out.loc[scored[KEY].astype("int64").astype(str), "score"].to_numpy() - own).max() <= 1e-9
    details = last_run(cfg.results.path)["details"]  # the ledger says what was read, and in what chunks
    assert "notes" not in details["columns_read"] and {KEY, "applied_at", "age"} <= set(details["columns_read"])
    assert details["rows_per_chunk"] >= 1


def test_a_long_passthrough_text_sizes_the_chunks(tmp_path, sample_db, store) -> None:
    """A passed-through text of 10,000 bytes a row is measured (one aggregate query), so an 8 MiB budget gives
    chunks of about 200 rows, not the thousands the short-string estimate (48 bytes) would allow; every row is
    scored as the model scores it and published with its text intact."""
    long = 10_000
    db = dirty_source(tmp_path, sample_db, "ALTER TABLE loan_applications ADD COLUMN notes VARCHAR",
                      f"UPDATE loan_applications SET notes = repeat('x', {long - 6}) || lpad(CAST({KEY} % 1000000 "
                      "AS VARCHAR), 6, '0')")
    cfg = load_config(write_config(tmp_path, db, store, chunking={"memory_budget_mib": 8},
                                   results={"passthrough": ["notes"]}))
    with open_source(cfg.source) as source:
        interval = DataInterval.for_day(CLEAN_DAY)
        source.select_columns([KEY, "notes"])
        assert source.text_widths(interval)["notes"] == (float(long), long)
        source.select_columns([KEY])
        assert source.text_widths(interval) == {}  # nothing to measure: no query
    result = pipeline.run_day(cfg, CLEAN_DAY)
    src = source_day(db, CLEAN_DAY)
    assert result.rows_in == len(src) == result.rows_scored + result.rows_rejected
    details = last_run(cfg.results.path)["details"]
    ms = ModelStore(store)
    mv = ms.get("loan_default", 1)
    with open_source(cfg.source) as source:
        source.select_columns(details["columns_read"])
        schema = source.read_schema()
    short = chunk_rows(schema, mv.meta["encoded_width"], 8)
    measured = chunk_rows(schema, mv.meta["encoded_width"], 8, text_bytes={"notes": long})
    assert row_bytes(schema, {"notes": long}) - row_bytes(schema) == long + 5 - 48
    assert details["rows_per_chunk"] == measured and MIN_ROWS < measured < 300 and short >= 3000
    assert result.rows_in > measured  # more than one chunk
    out = published(cfg.results.path, CLEAN_DAY).set_index("source_key")
    scored = src[src[KEY].notna()]
    own = ms.load(mv).predict_proba(scored[[f["name"] for f in mv.features]])[:, 1]
    keys = scored[KEY].astype("int64").astype(str)
    assert abs(out.loc[keys, "score"].to_numpy() - own).max() <= 1e-9
    assert (out.loc[keys, "notes"].to_numpy() == scored["notes"].to_numpy()).all()
