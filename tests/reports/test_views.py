"""Report views against hand-computed values on a small known dataset, in DuckDB and in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from scoring.config import load_config
from scoring.models.scorer import PREDICTION_SCHEMA
from scoring.quality.quarantine import QUARANTINE_SCHEMA
from scoring.reports import refresh_reports
from scoring.reports.summaries import summarize
from scoring.run import pipeline
from scoring.storage.results import RunRecord, duckdb_store
from scoring.storage.results.duckdb_store import DuckDBResults
from scoring.storage.results.tables import all_tables
from scoring.storage.results.views import VIEW_NAMES, create_postgres_views
from tests.conftest import SCORE_DAY

PG_URL = os.environ.get("SCORING_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
DAY_A, DAY_B, DAY_C = dt.date(2026, 4, 1), dt.date(2026, 4, 2), dt.date(2026, 4, 3)
T0 = dt.datetime(2026, 4, 4, 6, 0, tzinfo=dt.UTC)

# The known dataset: day A scored by v1 with two quarantined rows, day B by v2, day C failed.
SCORES_A = [0.02, 0.17, 0.52, 0.91, 0.97]
SCORES_B = [0.11, 0.33, 0.62, 0.64]
QUARANTINE_A = [("k6", "age", "expect_column_values_to_be_between", "200"),
                (None, "application_id", "expect_column_values_to_not_be_null", None)]

# Worked by hand (percentile_cont is linear interpolation at position q * (n - 1) of the sorted scores).
EXPECTED_DAILY = [
    {"day": DAY_A, "model_version": 1, "rows_scored": 5, "rows_quarantined": 2, "quarantined_share": 2 / 7,
     "mean_score": 2.59 / 5, "positive_rate": 0.6, "positives": 3,
     "score_p10": 0.02 + 0.4 * (0.17 - 0.02),  # position 0.4
     "score_p50": 0.52,  # position 2
     "score_p90": 0.91 + 0.6 * (0.97 - 0.91),  # position 3.6
     "score_min": 0.02, "score_max": 0.97},
    {"day": DAY_B, "model_version": 2, "rows_scored": 4, "rows_quarantined": 0, "quarantined_share": 0.0,
     "mean_score": 1.70 / 4, "positive_rate": 0.5, "positives": 2,
     "score_p10": 0.11 + 0.3 * (0.33 - 0.11),  # position 0.3
     "score_p50": 0.33 + 0.5 * (0.62 - 0.33),  # position 1.5
     "score_p90": 0.62 + 0.7 * (0.64 - 0.62),  # position 2.7
     "score_min": 0.11, "score_max": 0.64},
]
# Bins of width 0.05: floor(score * 20).
EXPECTED_BINS = {DAY_A: {0: 1, 3: 1, 10: 1, 18: 1, 19: 1}, DAY_B: {2: 1, 6: 1, 12: 2}}
EXPECTED_QUARANTINE = [(DAY_A, "expect_column_values_to_be_between", "age", 1),
                       (DAY_A, "expect_column_values_to_not_be_null", "application_id", 1)]
EXPECTED_RUNS = [(DAY_A, "success", 1, True), (DAY_B, "success", 2, True), (DAY_C, "failed", 2, True)]


def _stage(folder: Path, name: str, scores: list[float], quarantine: list[tuple]) -> tuple[list[Path], list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    files, qfiles = [], []
    if scores:
        keys = [f"{name}-{i}" for i in range(len(scores))]
        hits = [int(s >= 0.5) for s in scores]
        table = pa.table([pa.array(keys), pa.array(scores, pa.float64()), pa.array(hits, pa.int8()),
                          pa.array([str(h) for h in hits]), pa.nulls(len(keys), pa.string())],
                         schema=PREDICTION_SCHEMA)
        # Two chunks, as the pipeline stages them.
        for i, part in enumerate((table.slice(0, 2), table.slice(2))):
            pq.write_table(part, folder / f"{name}-{i}.parquet")
            files.append(folder / f"{name}-{i}.parquet")
    if quarantine:
        q = pa.table({"source_key": [r[0] for r in quarantine], "column_name": [r[1] for r in quarantine],
                      "rule": [r[2] for r in quarantine], "value": [r[3] for r in quarantine],
                      "row_json": ["{}"] * len(quarantine), "reason": [None] * len(quarantine)},
                     schema=QUARANTINE_SCHEMA)
        pq.write_table(q, folder / f"{name}.q.parquet")
        qfiles.append(folder / f"{name}.q.parquet")
    return files, qfiles


def _run(day: dt.date, version: int, started: dt.datetime, scores: list[float], rejected: int) -> RunRecord:
    run = RunRecord(f"m__{day}__{started:%H%M%S}", day, "m", version, started, trigger="test")
    run.rows_scored, run.rows_rejected, run.rows_in = len(scores), rejected, len(scores) + rejected
    return run


def publish_known(store: DuckDBResults, folder: Path, summaries: bool = True) -> list[RunRecord]:
    """Publish the known dataset through the store's real publish, with the summaries the pipeline adds."""
    store.ensure_schema()
    out = []
    for i, (day, version, scores, quarantine) in enumerate([(DAY_A, 1, SCORES_A, QUARANTINE_A),
                                                             (DAY_B, 2, SCORES_B, [])]):
        run = _run(day, version, T0 + dt.timedelta(minutes=i), scores, len(quarantine))
        files, qfiles = _stage(folder, f"{day}", scores, quarantine)
        store.start_run(run)
        run.finish("success")
        store.publish(run, files, qfiles, extra=summarize(run, files, qfiles) if summaries else None)
        out.append(run)
    failed = _run(DAY_C, 2, T0 + dt.timedelta(minutes=5), [], 0)
    store.start_run(failed)
    failed.finish("failed", "SourceError: table went away")
    store.fail_run(failed)
    return [*out, failed]


def results_cfg(folder: Path, results: dict) -> object:
    raw = {"source": {"kind": "duckdb", "path": str(folder / "unused.duckdb"), "table": "t",
                      "timestamp_column": "ts", "key_column": "id"},
           "model": {"store": str(folder / "models"), "name": "m"}, "results": results}
    (folder / "scoring.yaml").write_text(yaml.safe_dump(raw))
    return load_config(folder / "scoring.yaml")


def duckdb_views(path: Path) -> dict[str, list[dict]]:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        order = {"daily_summary": "day", "score_histogram": "day, bin", "quarantine_summary": "day, rule",
                 "drift_summary": "day, feature", "run_history": "started_at"}
        return {v: con.sql(f"SELECT * FROM {v} ORDER BY {order[v]}").to_arrow_table().to_pylist() for v in VIEW_NAMES}


def check_expected(views: dict[str, list[dict]]) -> None:
    """The hand-computed values, whatever the database."""
    daily = views["daily_summary"]
    assert [r["day"] for r in daily] == [DAY_A, DAY_B]
    for got, want in zip(daily, EXPECTED_DAILY, strict=True):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (got["day"], key)
        assert got["model_name"] == "m"
    hist = views["score_histogram"]
    for day, counts in EXPECTED_BINS.items():
        rows = [r for r in hist if r["day"] == day]
        assert [r["bin"] for r in rows] == list(range(20))
        assert [r["count"] for r in rows] == [counts.get(b, 0) for b in range(20)]
        assert [r["bin_lo"] for r in rows] == pytest.approx([b / 20 for b in range(20)])
        assert sum(r["share"] for r in rows) == pytest.approx(1.0)
        assert rows[12]["share"] == pytest.approx(counts.get(12, 0) / sum(counts.values()))
    assert [(r["day"], r["rule"], r["column_name"], r["count"]) for r in views["quarantine_summary"]] == \
        EXPECTED_QUARANTINE
    assert [(r["day"], r["status"], r["model_version"], r["is_latest"]) for r in views["run_history"]] == \
        EXPECTED_RUNS
    assert views["run_history"][2]["error"] == "SourceError: table went away"


def assert_views_close(got: dict[str, list[dict]], want: dict[str, list[dict]]) -> None:
    """Same rows, columns and values; floats to 1e-12 (sums may add in another order)."""
    for view in VIEW_NAMES:
        assert len(got[view]) == len(want[view]), view
        for g, w in zip(got[view], want[view], strict=True):
            assert list(g) == list(w), view  # the same columns in the same order
            for key, value in w.items():
                if isinstance(value, float):
                    assert g[key] == pytest.approx(value, abs=1e-12), (view, key)
                else:
                    assert g[key] == value, (view, key)


# ---------------------------------------------------------------- DuckDB


@pytest.fixture()
def known(tmp_path: Path) -> tuple[object, DuckDBResults]:
    cfg = results_cfg(tmp_path, {"kind": "duckdb", "path": str(tmp_path / "results.duckdb"),
                                 "staging_dir": str(tmp_path / "staging")})
    store = DuckDBResults(cfg.results)
    publish_known(store, tmp_path / "stage")
    return cfg, store


def test_duckdb_views_match_hand_computed_values(known) -> None:
    cfg, _ = known
    views = duckdb_views(cfg.results.path)
    check_expected(views)
    assert views["drift_summary"] == []  # no drift table: an empty view with the same columns


def test_drift_summary_reads_the_drift_table_once_it_exists(known) -> None:
    cfg, store = known
    with store.connect() as con:  # the drift table as issue 4 declares it
        con.execute("CREATE OR REPLACE TABLE drift (run_id VARCHAR, day DATE, model_name VARCHAR, model_version INTEGER, "
                    "feature VARCHAR, psi DOUBLE, status VARCHAR)")
        con.execute("INSERT INTO drift VALUES ('r', DATE '2026-04-01', 'm', 1, 'age', 0.31, 'alert'), "
                    "('r', DATE '2026-04-01', 'm', 1, 'income', 0.02, 'ok'), "
                    "('r', DATE '2026-04-01', 'other', 1, 'age', 0.5, 'alert')")
    counts = refresh_reports(cfg)
    views = duckdb_views(cfg.results.path)
    assert [(r["feature"], r["psi"], r["status"]) for r in views["drift_summary"] if r["model_name"] == "m"] == \
        [("age", 0.31, "alert"), ("income", 0.02, "ok")]
    assert counts["drift_summary"] == 3 and counts["daily_summary"] == 2 and counts["summaries_rebuilt"] == 0


def test_republish_replaces_summaries_and_a_failed_publish_keeps_them(known, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, store = known
    before = duckdb_views(cfg.results.path)
    run = _run(DAY_A, 3, T0 + dt.timedelta(hours=1), [0.9, 0.8], 0)
    files, qfiles = _stage(tmp_path / "again", "a2", [0.9, 0.8], [])

    def boom(run) -> None:
        raise RuntimeError("injected crash before commit")

    monkeypatch.setattr(duckdb_store, "before_commit", boom)
    store.start_run(run)
    run.finish("success")
    with pytest.raises(RuntimeError, match="injected"):
        store.publish(run, files, qfiles, extra=summarize(run, files, qfiles))
    after = duckdb_views(cfg.results.path)
    assert after["daily_summary"] == before["daily_summary"]
    assert after["score_histogram"] == before["score_histogram"]
    assert after["quarantine_summary"] == before["quarantine_summary"]

    monkeypatch.undo()
    store.publish(run, files, qfiles, extra=summarize(run, files, qfiles))
    views = duckdb_views(cfg.results.path)
    day_a = [r for r in views["daily_summary"] if r["day"] == DAY_A]
    assert len(day_a) == 1 and day_a[0]["model_version"] == 3 and day_a[0]["rows_scored"] == 2
    assert day_a[0]["mean_score"] == pytest.approx(0.85) and day_a[0]["rows_quarantined"] == 0
    assert sum(r["count"] for r in views["score_histogram"] if r["day"] == DAY_A) == 2
    assert not [r for r in views["quarantine_summary"] if r["day"] == DAY_A]
    assert views["daily_summary"][1] == before["daily_summary"][1]  # day B untouched


def test_refresh_rebuilds_missing_and_stale_summaries_from_the_predictions(known, tmp_path: Path) -> None:
    cfg, store = known
    expected = duckdb_views(cfg.results.path)
    with store.connect() as con:
        for table in ("prediction_stats", "score_bins", "quarantine_counts"):
            con.execute(f"DELETE FROM {table}")
    assert duckdb_views(cfg.results.path)["daily_summary"] == []
    counts = refresh_reports(cfg)
    assert counts["summaries_rebuilt"] == 2 and counts["daily_summary"] == 2 and counts["score_histogram"] == 40
    assert_views_close(duckdb_views(cfg.results.path), expected)

    # A publisher that forgets the summaries leaves the previous run's: refresh notices and recomputes.
    run = _run(DAY_B, 2, T0 + dt.timedelta(hours=2), [0.4], 0)
    files, qfiles = _stage(tmp_path / "stale", "b2", [0.4], [])
    store.start_run(run)
    run.finish("success")
    store.publish(run, files, qfiles)
    assert duckdb_views(cfg.results.path)["daily_summary"][1]["rows_scored"] == 4  # stale
    assert refresh_reports(cfg)["summaries_rebuilt"] == 1
    day_b = duckdb_views(cfg.results.path)["daily_summary"][1]
    assert (day_b["rows_scored"], day_b["mean_score"], day_b["run_id"]) == (1, 0.4, run.run_id)
    assert refresh_reports(cfg)["summaries_rebuilt"] == 0


def test_pipeline_summaries_equal_aggregates_over_the_published_predictions(cfg) -> None:
    """End to end: the summaries computed from the staged chunks agree with the predictions table."""
    first = SCORE_DAY - dt.timedelta(days=1)
    for day in (first, SCORE_DAY):
        pipeline.run_day(cfg, day, rows_per_chunk=128)
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        direct = con.sql("SELECT day, count(*) AS n, avg(score) AS mean, avg(label) AS rate, "
                         "quantile_cont(score, 0.1) AS p10, quantile_cont(score, 0.5) AS p50, "
                         "quantile_cont(score, 0.9) AS p90 FROM predictions GROUP BY day ORDER BY day"
                         ).to_arrow_table().to_pylist()
        bins = con.sql("SELECT day, least(floor(score * 20), 19)::INT AS bin, count(*) AS n FROM predictions "
                       "GROUP BY ALL ORDER BY ALL").fetchall()
        runs = con.sql("SELECT day, rows_rejected FROM runs ORDER BY day").fetchall()
    views = duckdb_views(cfg.results.path)
    daily = views["daily_summary"]
    assert [r["day"] for r in daily] == [first, SCORE_DAY]
    for got, want in zip(daily, direct, strict=True):
        assert got["rows_scored"] == want["n"] > 0
        np.testing.assert_allclose([got["mean_score"], got["positive_rate"], got["score_p10"], got["score_p50"],
                                    got["score_p90"]],
                                   [want["mean"], want["rate"], want["p10"], want["p50"], want["p90"]], rtol=1e-12)
    assert [(r["day"], r["rows_quarantined"]) for r in daily] == runs
    assert [(r["day"], r["bin"], r["count"]) for r in views["score_histogram"] if r["count"]] == bins


# ---------------------------------------------------------------- PostgreSQL

PG_TYPES = {"string": "TEXT", "float": "DOUBLE PRECISION", "int8": "SMALLINT", "int32": "INTEGER",
            "int64": "BIGINT", "date": "DATE", "timestamptz": "TIMESTAMPTZ", "bool": "BOOLEAN", "json": "JSONB"}


@pytest.fixture()
def pg_schema():
    """A throwaway schema on the real server; fails under CI=true and skips otherwise when it is absent."""
    psycopg = pytest.importorskip("psycopg")
    try:
        con = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {PG_URL}: {str(exc).strip().splitlines()[0]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"report_test_{uuid.uuid4().hex[:10]}"
    con.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield con, schema
    finally:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
        con.close()


@pytest.mark.postgres
def test_postgres_views_match_hand_computed_values_and_duckdb(known, pg_schema, tmp_path: Path) -> None:
    """The results tables as the PostgreSQL store declares them, holding the same rows as the DuckDB file
    (predictions, quarantine and runs only): refresh_reports builds the summaries and views in PostgreSQL."""
    duck_cfg, _ = known
    con, schema = pg_schema
    for spec in all_tables("predictions"):
        cols = ", ".join(f'"{c.name}" {PG_TYPES[c.type]}{"" if c.nullable else " NOT NULL"}' for c in spec.columns)
        con.execute(f'CREATE TABLE "{schema}"."{spec.name}" ({cols})')
    with duckdb.connect(str(duck_cfg.results.path), read_only=True) as src:
        for table in ("predictions", "quarantine", "runs"):
            rows = src.sql(f"SELECT * FROM {table}").to_arrow_table()
            names = ", ".join(f'"{c}"' for c in rows.column_names)
            marks = ", ".join(["%s"] * rows.num_columns)
            with con.cursor() as cur:
                cur.executemany(f'INSERT INTO "{schema}"."{table}" ({names}) VALUES ({marks})',
                                [tuple(r.values()) for r in rows.to_pylist()])
    (tmp_path / "pg").mkdir()
    cfg = results_cfg(tmp_path / "pg", {"kind": "postgres", "url": PG_URL, "schema": schema})
    counts = refresh_reports(cfg)
    assert counts["summaries_rebuilt"] == 2 and counts["daily_summary"] == 2 and counts["drift_summary"] == 0
    create_postgres_views(con, schema)  # idempotent: recreating keeps working

    def pg_views() -> dict[str, list[dict]]:
        order = {"daily_summary": "day", "score_histogram": "day, bin", "quarantine_summary": "day, rule",
                 "drift_summary": "day, feature", "run_history": "started_at"}
        out = {}
        for view in VIEW_NAMES:
            cur = con.execute(f'SELECT * FROM "{schema}"."{view}" ORDER BY {order[view]}')
            names = [c.name for c in cur.description]
            out[view] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        return out

    views = pg_views()
    check_expected(views)
    assert_views_close(views, duckdb_views(duck_cfg.results.path))

    # The drift table appears later (issue 4): recreating the views picks it up.
    con.execute(f'DROP TABLE IF EXISTS "{schema}"."drift" CASCADE')
    con.execute(f'CREATE TABLE "{schema}"."drift" (run_id TEXT, day DATE, model_name TEXT, model_version INTEGER, '
                "feature TEXT, psi DOUBLE PRECISION, status TEXT)")
    con.execute(f'INSERT INTO "{schema}"."drift" VALUES (%s, %s, %s, %s, %s, %s, %s)',
                ("r", DAY_A, "m", 1, "age", 0.31, "alert"))
    create_postgres_views(con, schema)
    assert [(r["day"], r["feature"], r["psi"], r["status"]) for r in pg_views()["drift_summary"]] == \
        [(DAY_A, "age", 0.31, "alert")]
