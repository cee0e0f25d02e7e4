"""PostgreSQL chunk reads pushed into SQL: a planned chunk reads only its key range, the plan's cuts and the
duplicate-key check are computed in the database.

The proof is a source view whose ``credit_score`` divides by zero on every row outside the key range the test
allows (a one-row table it updates between chunks): only a read whose key range is in the SQL, or that does not
read ``credit_score`` at all, can succeed. The generic fallbacks (``Source.range_batches`` filtering the whole
day in Python, ``Source.key_cuts`` reading every key through the rows) fail on it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from scoring.config import SourceConfig, load_config
from scoring.dates import DataInterval
from scoring.errors import SourceError
from scoring.run.plan import plan_run, publish_plan, score_planned_chunk, validate_plan
from scoring.storage.sources import open_source
from scoring.storage.sources.base import KeyRange, Source, key_ranges, ntile_ends
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published
from tests.run.fault_helpers import expected_scores
from tests.storage.pg_helpers import copy_sample, pg_execute, pg_frame

pytestmark = pytest.mark.postgres
KEY = "application_id"


def _guarded_view(url: str, schema: str) -> None:
    """``guarded``: the sample rows, with ``credit_score`` dividing by zero outside ``allowed``'s key range."""
    cols = pg_frame(url, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                         "AND table_name = 'loan_applications' ORDER BY ordinal_position", [schema])["column_name"]
    pg_execute(url, f'CREATE TABLE "{schema}".allowed (open boolean, lo bigint, hi bigint, nulls boolean)')
    pg_execute(url, f"INSERT INTO \"{schema}\".allowed VALUES (false, NULL, NULL, false)")
    inside = (f"a.open AND ((t.{KEY} IS NULL AND a.nulls) OR ((a.lo IS NULL OR t.{KEY} > a.lo) "
              f"AND (a.hi IS NULL OR t.{KEY} <= a.hi)))")
    items = [f"t.credit_score / CASE WHEN {inside} THEN 1 ELSE 0 END AS credit_score" if c == "credit_score"
             else f"t.{c}" for c in cols]
    pg_execute(url, f'CREATE VIEW "{schema}".guarded AS SELECT {", ".join(items)} '  # noqa: S608 - test names
                    f'FROM "{schema}".loan_applications t CROSS JOIN "{schema}".allowed a')


def _allow(url: str, schema: str, key_range: KeyRange | None) -> None:
    """Let rows of ``key_range`` (None: no row) be read; committed, so the next chunk's snapshot sees it."""
    if key_range is None:
        pg_execute(url, f'UPDATE "{schema}".allowed SET open = false')
    else:
        pg_execute(url, f'UPDATE "{schema}".allowed SET open = true, lo = %s, hi = %s, nulls = %s',
                   [key_range.lo, key_range.hi, key_range.nulls])


def _source_cfg(url: str, schema: str, table: str) -> dict:
    return {"kind": "postgres", "url": url, "path": None, "table": f"{schema}.{table}",
            "timestamp_column": "applied_at", "key_column": KEY, "connect_timeout_s": 2}


def test_a_planned_day_reads_each_chunk_by_its_key_range(tmp_path: Path, sample_db: Path, store: Path,
                                                         pg_url: str, pg_schema: str) -> None:
    copy_sample(sample_db, pg_url, pg_schema)
    _guarded_view(pg_url, pg_schema)
    cfg = load_config(write_config(tmp_path, sample_db, store, source=_source_cfg(pg_url, pg_schema, "guarded")))
    interval = DataInterval.for_day(SCORE_DAY)

    # No row may be read: counting, cutting (in SQL) and validating never touch credit_score.
    _allow(pg_url, pg_schema, None)
    plan = plan_run(cfg, interval, rows_per_chunk=150, key="pushdown").to_json()
    assert len(plan["chunks"]) == 4 and plan["rows"] == 600
    assert len(validate_plan(cfg, plan)) == 4

    # The fallbacks would read credit_score outside the allowed range, and fail.
    with open_source(cfg.source) as src:
        with pytest.raises(SourceError, match="division by zero"):
            Source.key_cuts(src, interval, 4)
        first = plan["chunks"][0]
        _allow(pg_url, pg_schema, KeyRange(first["lo"], first["hi"], first["nulls"]))
    with open_source(cfg.source) as src, pytest.raises(SourceError, match="division by zero"):
        list(Source.range_batches(src, interval, KeyRange(first["lo"], first["hi"], first["nulls"]), 1000))

    results = []
    for chunk in plan["chunks"]:
        _allow(pg_url, pg_schema, KeyRange(chunk["lo"], chunk["hi"], chunk["nulls"]))
        results.append(score_planned_chunk(cfg, plan, chunk["index"]))
    assert sum(r["rows_in"] for r in results) == 600 and all(r["rows_in"] == 150 for r in results)

    _allow(pg_url, pg_schema, None)  # publishing reads no source row either
    counts = publish_plan(cfg, plan, results)
    pred = published(cfg.results.path, SCORE_DAY)
    expected = expected_scores(sample_db, store, SCORE_DAY)
    assert pred["source_key"].is_unique and len(pred) == len(expected) == 600
    np.testing.assert_allclose(pred.set_index("source_key")["score"].loc[list(expected)].to_numpy(),
                               list(expected.values()), rtol=0, atol=1e-9)
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success" and row["rows_in"] == counts["rows_in"] == 600
    assert row["rows_in"] == row["rows_scored"] + row["rows_rejected"]


def _read_all(src: Source, interval: DataInterval, ranges: list[KeyRange]) -> list[pa.Table]:
    return [pa.Table.from_batches(list(src.range_batches(interval, r, 7)), src.read_schema()) for r in ranges]


def _keyed_day(pg_url: str, pg_schema: str, kind: str, next_day_rows: int) -> tuple[SourceConfig, DataInterval]:
    """A PostgreSQL table ``keyed`` with an ``id`` key of SQL type ``kind``: 300 rows on 2026-03-07 (every 17th
    key NULL, keys repeated, ``x`` = 0..299) and ``next_day_rows`` rows on the next day (``x`` <= 0)."""
    values = {"bigint": "g * 7 % 101", "text": "'k' || (g * 7 % 101)", "numeric(12, 2)": "(g * 7 % 101) / 4.0",
              "uuid": "md5((g * 7 % 101)::text)::uuid"}[kind]
    pg_execute(pg_url, f'CREATE TABLE "{pg_schema}".keyed (id {kind}, ts timestamptz, x double precision)')
    pg_execute(pg_url, f"""INSERT INTO "{pg_schema}".keyed SELECT CASE WHEN g % 17 = 0 THEN NULL ELSE {values} END,
        timestamptz '2026-03-07 00:00+00' + g * interval '1 min', g FROM generate_series(0, 299) AS g""")
    pg_execute(pg_url, f"""INSERT INTO "{pg_schema}".keyed SELECT {values},
        timestamptz '2026-03-08 00:00+00' + g * interval '1 min', -g
        FROM generate_series(0, {next_day_rows - 1}) AS g""")
    cfg = SourceConfig(kind="postgres", url=pg_url, table=f"{pg_schema}.keyed", timestamp_column="ts",
                       key_column="id")
    return cfg, DataInterval.for_day(dt.date(2026, 3, 7))


@pytest.mark.parametrize("kind", ["bigint", "text", "uuid", "numeric(12, 2)"])
def test_ranges_cover_every_row_once_for_each_key_type(pg_url: str, pg_schema: str, kind: str) -> None:
    """Cuts from SQL equal the generic ones; the ranges partition the day (NULL keys in the first range)."""
    cfg, interval = _keyed_day(pg_url, pg_schema, kind, next_day_rows=51)
    with open_source(cfg) as src:
        cuts, generic = src.key_cuts(interval, 5), Source.key_cuts(src, interval, 5)
        # numeric and uuid cuts come as text (cast back to the key's type when read); the same values
        assert [type(g)(c) for c, g in zip(cuts, generic, strict=True)] == generic and len(cuts) == 4
        parts = _read_all(src, interval, key_ranges(cuts))
    xs = sorted(x for t in parts for x in t.column("x").to_pylist())
    assert xs == list(range(300))  # every row of the day once, none of the next day
    assert parts[0].column("id").null_count == 300 // 17 + 1
    assert all(t.column("id").null_count == 0 for t in parts[1:])


@pytest.mark.parametrize("kind", ["bigint", "text", "uuid"])
@pytest.mark.parametrize("chunks", [1, 3, 8, 400])
def test_one_sort_gives_the_cuts_and_the_duplicate_keys(pg_url: str, pg_schema: str, kind: str,
                                                        chunks: int) -> None:
    """``key_cuts_and_duplicates`` (the plan's one query) equals ``key_cuts`` and ``duplicate_values`` run
    apart, with NULL keys, keys repeated within and across buckets and the next day's rows beside; keys that
    are not plain integers or text (uuid) decline, so the plan runs the two queries."""
    cfg, interval = _keyed_day(pg_url, pg_schema, kind, next_day_rows=501)
    with open_source(cfg) as src:
        both = src.key_cuts_and_duplicates(interval, chunks)
        if kind == "uuid":
            assert both is None
            return
        assert both is not None
        cuts, duplicates = both
        assert cuts == src.key_cuts(interval, chunks)
        expected = src.duplicate_values(interval, "id")
    assert duplicates.type == expected.type
    assert sorted(duplicates.to_pylist()) == sorted(expected.to_pylist()) and len(duplicates) > 50


def test_ntile_ends_are_where_postgres_ntile_ends_its_buckets(pg_url: str) -> None:
    """``ntile_ends`` (the bucket ends ``key_cuts_and_duplicates`` keeps) equals the server's own ``ntile`` for
    0..30 rows in 1..40 buckets: fewer rows than buckets, an uneven split, no rows."""
    frame = pg_frame(pg_url, "SELECT rows, n, array_agg(last ORDER BY b) AS ends FROM (SELECT rows, n, b, "
                             "max(r) AS last FROM (SELECT rows, n, r, ntile(n) OVER (PARTITION BY rows, n ORDER BY r) "
                             "AS b FROM generate_series(1, 30) AS rows, generate_series(1, 40) AS n, "
                             "generate_series(1, rows) AS r) AS t GROUP BY rows, n, b) AS e GROUP BY rows, n")
    server = {(int(r.rows), int(r.n)): list(r.ends) for r in frame.itertuples()}
    assert len(server) == 30 * 40 and server[(3, 8)] == [1, 2, 3] and server[(7, 3)] == [3, 5, 7]
    assert all(ntile_ends(rows, n) == ends for (rows, n), ends in server.items())
    assert ntile_ends(0, 5) == [] and ntile_ends(7, 0) == [7]


@pytest.mark.parametrize("day", [dt.date(2026, 3, 9), dt.date(2026, 3, 10)], ids=["null_keys", "empty"])
@pytest.mark.parametrize("counted", [False, True])
def test_one_sort_without_a_key_gives_no_cuts_and_no_duplicates(pg_url: str, pg_schema: str, day: dt.date,
                                                                 counted: bool) -> None:
    """A day whose keys are all NULL, and a day without rows, give what ``key_cuts`` and ``duplicate_values``
    give: no cuts, no duplicates; whether ``count`` ran first (the key count cached) or not."""
    cfg, _ = _keyed_day(pg_url, pg_schema, "bigint", next_day_rows=5)
    pg_execute(pg_url, f"""INSERT INTO "{pg_schema}".keyed SELECT NULL, timestamptz '2026-03-09 00:00+00'
        + g * interval '1 min', g FROM generate_series(0, 9) AS g""")
    interval = DataInterval.for_day(day)
    with open_source(cfg) as src:
        if counted:
            assert src.count(interval) == (10 if day.day == 9 else 0)
        cuts, duplicates = src.key_cuts_and_duplicates(interval, 4)
        assert cuts == src.key_cuts(interval, 4) == []
        assert duplicates.type == pa.int64() and duplicates.to_pylist() == src.duplicate_values(interval, "id").to_pylist() == []


def test_one_sort_uses_the_counts_of_the_plans_earlier_scan(pg_url: str, pg_schema: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``text_widths`` (the plan's sizing scan) also counts the rows and the non-null keys: the plan's ``count``
    then runs no query and its cuts one (the window); counts cached for one interval are not another's."""
    cfg, interval = _keyed_day(pg_url, pg_schema, "text", next_day_rows=501)
    with open_source(cfg) as src:
        alone = src.key_cuts_and_duplicates(interval, 8)
    with open_source(cfg) as src:
        assert src.text_widths(interval)["id"][1] == len("k100")
        queries: list[str] = []
        for name in ("_execute", "_arrow"):
            run = getattr(src, name)
            monkeypatch.setattr(src, name, lambda sql, *a, run=run: queries.append(sql) or run(sql, *a))
        assert src.count(interval) == 300 and src.key_count(interval) == 300 - (300 // 17 + 1)
        after = src.key_cuts_and_duplicates(interval, 8)
        assert len(queries) == 1 and "row_number()" in queries[0]
        next_day = DataInterval.for_day(dt.date(2026, 3, 8))
        assert src.count(next_day) == 501 and src.key_count(next_day) == 501
        assert src.key_cuts_and_duplicates(next_day, 8)[0] == src.key_cuts(next_day, 8)
    assert alone is not None and after is not None
    assert after[0] == alone[0] and after[1].equals(alone[1])


@pytest.mark.parametrize("ts_type", ["timestamp", "date"])
def test_one_sort_on_a_naive_timestamp_or_date_column(pg_url: str, pg_schema: str, ts_type: str) -> None:
    """The interval bounds are bound as values of the timestamp column's own type (naive wall clock in the
    business zone, or a date): the same rows as ``key_cuts`` and ``duplicate_values`` read."""
    pg_execute(pg_url, f'CREATE TABLE "{pg_schema}".dated (id bigint, ts {ts_type})')
    pg_execute(pg_url, f"""INSERT INTO "{pg_schema}".dated SELECT g / 2, timestamp '2026-03-06 12:00'
        + g * interval '1 min' FROM generate_series(0, 2999) AS g""")  # keys twice, rising with the time
    cfg = SourceConfig(kind="postgres", url=pg_url, table=f"{pg_schema}.dated", timestamp_column="ts",
                       key_column="id")
    interval = DataInterval.for_day(dt.date(2026, 3, 7), "Europe/Berlin")
    with open_source(cfg) as src:
        assert src.count(interval) == 1440
        cuts, duplicates = src.key_cuts_and_duplicates(interval, 3)
        assert cuts == src.key_cuts(interval, 3) and len(cuts) == 2
        assert sorted(duplicates.to_pylist()) == sorted(src.duplicate_values(interval, "id").to_pylist())
        assert len(duplicates) == 720


def test_a_planned_day_quarantines_its_duplicated_keys(tmp_path: Path, sample_db: Path, store: Path,
                                                                 pg_url: str, pg_schema: str) -> None:
    """The duplicate keys the plan found with its cuts (one sort) reach every chunk: each row of a repeated key
    is quarantined, the others published; rows_in = scored + quarantined, and the plan carries the same
    duplicates as the grouped query."""
    copy_sample(sample_db, pg_url, pg_schema)
    table = f'"{pg_schema}".loan_applications'
    pg_execute(pg_url, f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS loan_applications_pkey")
    pg_execute(pg_url, f"INSERT INTO {table} SELECT * FROM {table} WHERE {KEY} % 50 = 7")  # keys twice
    cfg = load_config(write_config(tmp_path, sample_db, store,
                                   source=_source_cfg(pg_url, pg_schema, "loan_applications")))
    interval = DataInterval.for_day(SCORE_DAY)
    plan = plan_run(cfg, interval, rows_per_chunk=150, key="dups").to_json()
    assert len(plan["chunks"]) >= 4
    with open_source(cfg.source) as src:
        expected_dups = sorted(src.duplicate_values(interval, KEY).to_pylist())
    assert len(expected_dups) > 3
    assert sorted(plan["quality_inputs"]["duplicates"][KEY]) == expected_dups
    results = [score_planned_chunk(cfg, plan, i) for i in validate_plan(cfg, plan)]
    counts = publish_plan(cfg, plan, results)
    pred = published(cfg.results.path, SCORE_DAY)
    dup_keys = {str(k) for k in expected_dups}
    assert pred["source_key"].is_unique and not dup_keys & set(pred["source_key"])
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success" and row["rows_in"] == counts["rows_in"] == 600 + len(expected_dups)
    assert row["rows_in"] == row["rows_scored"] + row["rows_rejected"] and row["rows_rejected"] >= 2 * len(expected_dups)
    assert row["rows_scored"] == len(pred)
