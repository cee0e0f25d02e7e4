"""What a re-publish removes, counted inside the DuckDB results file (``removed_in``), equals the Arrow path's
count (``_removed``): keys gone, of them quarantined by the new attempt, the sample; with and without staged files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scoring.config import ResultsConfig
from scoring.storage.results.duckdb_store import DuckDBResults
from scoring.storage.results.replaced import _removed

DAY = dt.date(2026, 6, 2)
BEFORE_SQL = "SELECT source_key FROM predictions WHERE day = $1 AND model_name = $2"


@pytest.mark.parametrize("staged_kind", ["some", "none"])
def test_removed_in_the_results_file_equals_the_arrow_count(tmp_path: Path, staged_kind: str) -> None:
    store = DuckDBResults(ResultsConfig(kind="duckdb", path=tmp_path / "r.duckdb", staging_dir=tmp_path / "st"))
    store.ensure_schema()
    before = [f"k{i:05d}" for i in range(5_000)]
    with store.connect() as con:
        con.register("rows_", pa.table({"source_key": before}))
        con.execute("INSERT INTO predictions (day, model_name, model_version, run_id, scored_at, source_key, score) "
                    "SELECT $1, 'm', 1, 'r0', now(), source_key, 0.5 FROM rows_", [DAY])
        con.execute("INSERT INTO predictions (day, model_name, model_version, run_id, scored_at, source_key, score) "
                    "SELECT $1, 'other', 1, 'r0', now(), 'k00001', 0.5", [DAY])
    files, qfiles = [], []
    if staged_kind == "some":
        kept = [k for i, k in enumerate(before) if i % 7 and i % 11] + ["new-1", "new-2"]
        for part in range(3):  # three chunks of staged keys
            pq.write_table(pa.table({"source_key": kept[part::3], "score": [0.1] * len(kept[part::3])}),
                           tmp_path / f"p{part}.parquet")
            files.append(tmp_path / f"p{part}.parquet")
        pq.write_table(pa.table({"source_key": [k for i, k in enumerate(before) if i % 7 == 0]}),
                       tmp_path / "q.parquet")
        qfiles.append(tmp_path / "q.parquet")
    got = store.removed_keys(BEFORE_SQL, [DAY, "m"], files, qfiles)
    expected = _removed(pa.array(before), files, qfiles)
    assert got == expected
    assert got["removed"] == (len(before) - sum(1 for i in range(5_000) if i % 7 and i % 11)
                              if files else len(before)) > 0
    assert got["removed_quarantined"] == (len(range(0, 5_000, 7)) if files else 0)
    assert store.removed_keys(BEFORE_SQL, [DAY, "nobody"], files, qfiles) is None
