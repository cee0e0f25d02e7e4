"""End to end with PostgreSQL as source and/or results: same predictions, idempotent, crash-safe, concurrent."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import Config, ResultsConfig, load_config
from scoring.errors import SourceError
from scoring.run import pipeline
from scoring.storage.results import RunRecord, open_results, postgres_store
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published, source_day
from tests.storage.pg_helpers import copy_sample, make_wide_table, pg_frame, pg_ledger, pg_published

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
SECRET = "n0t-Logged-pw"


def _pg_source(url: str, schema: str, table: str = "loan_applications") -> dict:
    return {"kind": "postgres", "url": url, "path": None, "table": f"{schema}.{table}", "connect_timeout_s": 2}


def _pg_results(url: str, schema: str, folder: Path) -> dict:
    return {"kind": "postgres", "url": url, "path": None, "schema": schema, "staging_dir": str(folder / "staging"),
            "connect_timeout_s": 2}


def _config(folder: Path, sample_db: Path, store: Path, **overrides: object) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    return load_config(write_config(folder, sample_db, store, **overrides))


def _predictions(cfg: Config, day: dt.date = SCORE_DAY) -> pd.DataFrame:
    if cfg.results.kind == "duckdb":
        out = published(cfg.results.path, day)
    else:
        out = pg_published(cfg.results.url, cfg.results.db_schema, day)
    return out.sort_values("source_key").reset_index(drop=True)


def test_every_combination_gives_the_same_predictions(tmp_path: Path, sample_db: Path, store: Path, pg_url: str,
                                                      pg_schema: str) -> None:
    copy_sample(sample_db, pg_url, pg_schema)  # timestamptz and numeric(14,2) in PostgreSQL
    combos = {
        "duckdb->duckdb": {},
        "postgres->duckdb": {"source": _pg_source(pg_url, pg_schema)},
        "duckdb->postgres": {"results": _pg_results(pg_url, f"{pg_schema}_a", tmp_path / "c")},
        "postgres->postgres": {"source": _pg_source(pg_url, pg_schema),
                               "results": _pg_results(pg_url, f"{pg_schema}_b", tmp_path / "d")},
    }
    out, results = {}, {}
    for i, (name, overrides) in enumerate(combos.items()):
        cfg = _config(tmp_path / str(i), sample_db, store, **overrides)
        results[name] = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=97)
        out[name] = _predictions(cfg)
        api = open_results(cfg.results)  # the store's own readers ($1 parameters on both backends)
        assert api.predictions(SCORE_DAY, "loan_default").num_rows == len(out[name])
        assert api.runs(limit=5).column("status").to_pylist() == ["success"]
    src = source_day(sample_db, SCORE_DAY)
    base = out["duckdb->duckdb"]
    assert len(base) == len(src) and base["source_key"].is_unique
    for name, frame in out.items():
        assert results[name].rows_in == len(src), name
        assert frame["source_key"].tolist() == base["source_key"].tolist(), name
        np.testing.assert_allclose(frame["score"].to_numpy(), base["score"].to_numpy(), rtol=0, atol=1e-12)
        assert (frame["label"].astype(int) == base["label"].astype(int)).all(), name
        assert set(frame["day"].astype(str)) == {str(SCORE_DAY)} and set(frame["model_version"]) == {1}


def test_postgres_results_rerun_replaces_the_day(tmp_path: Path, sample_db: Path, store: Path, pg_url: str,
                                                 pg_schema: str) -> None:
    cfg = _config(tmp_path, sample_db, store, results=_pg_results(pg_url, pg_schema, tmp_path))
    other = SCORE_DAY - dt.timedelta(days=1)
    pipeline.run_day(cfg, other)
    first = pipeline.run_day(cfg, SCORE_DAY)
    second = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=50)
    day = pg_published(pg_url, pg_schema, SCORE_DAY)
    assert len(day) == first.rows_scored == second.rows_scored == len(source_day(sample_db, SCORE_DAY))
    assert day["source_key"].is_unique and set(day["run_id"]) == {second.run_id}
    assert len(pg_published(pg_url, pg_schema, other)) > 0
    assert list(pg_ledger(pg_url, pg_schema)["status"]) == ["success"] * 3
    keys = pg_frame(pg_url, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s", [pg_schema])["indexdef"]
    assert any("(day, model_name, source_key)" in k and "predictions_pkey" in k for k in keys)
    assert any("(day, model_name)" in k and "quarantine" in k for k in keys)
    types = pg_frame(pg_url, "SELECT column_name, data_type FROM information_schema.columns WHERE "
                             "table_schema = %s AND table_name = 'runs'", [pg_schema]).set_index("column_name")
    assert types.loc["details", "data_type"] == "jsonb" and types.loc["started_at", "data_type"].endswith("with time zone")
    summary = pg_frame(pg_url, f'SELECT day, rows_scored, run_id FROM "{pg_schema}".daily_summary ORDER BY day', [])
    assert list(summary["rows_scored"]) == [len(pg_published(pg_url, pg_schema, other)), len(day)]
    assert summary["run_id"].iloc[-1] == second.run_id  # the report view follows the replaced partition


def test_kill_between_staging_and_commit_leaves_the_old_partition(tmp_path: Path, sample_db: Path, store: Path,
                                                                  pg_url: str, pg_schema: str) -> None:
    cfg = _config(tmp_path, sample_db, store, results=_pg_results(pg_url, pg_schema, tmp_path))
    good = pipeline.run_day(cfg, SCORE_DAY)
    before = pg_published(pg_url, pg_schema, SCORE_DAY)
    script = (
        "import datetime as dt, os, signal, sys\n"
        "from scoring.run import pipeline\nfrom scoring.config import load_config\n"
        "from scoring.storage.results import postgres_store\n"
        "def die(run):\n"
        "    print('in publish transaction, all rows loaded', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "postgres_store.before_commit = die\n"
        "pipeline.run_day(load_config(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]), rows_per_chunk=50)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(cfg.path), str(SCORE_DAY)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "all rows loaded" in proc.stdout
    assert any(cfg.results.staging_dir.rglob("chunk-*.parquet"))  # killed after staging
    after = pg_published(pg_url, pg_schema, SCORE_DAY)
    pd.testing.assert_frame_equal(after, before)
    assert set(after["run_id"]) == {good.run_id}
    runs = pg_ledger(pg_url, pg_schema)
    assert list(runs["status"]) == ["success", "running"]  # the killed run never reached its publish
    again = pipeline.run_day(cfg, SCORE_DAY)  # no lock or row was left behind
    assert set(pg_published(pg_url, pg_schema, SCORE_DAY)["run_id"]) == {again.run_id}


def test_same_day_publishes_serialize_other_days_do_not_block(tmp_path: Path, pg_url: str, pg_schema: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    results = open_results(ResultsConfig(kind="postgres", url=pg_url, schema=pg_schema,
                                         staging_dir=tmp_path / "staging"))
    results.ensure_schema()
    rows = tmp_path / "chunk.parquet"
    pq.write_table(pa.table({"source_key": [f"k{i}" for i in range(1000)], "score": np.linspace(0, 1, 1000),
                             "label": pa.array([i % 2 for i in range(1000)], pa.int8())}), rows)
    day1, day2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    inside, release = threading.Event(), threading.Event()

    def hold(run: RunRecord) -> None:
        if run.run_id == "A":
            inside.set()
            assert release.wait(60)

    monkeypatch.setattr(postgres_store, "before_commit", hold)
    errors: list[BaseException] = []

    def publish(run_id: str, day: dt.date) -> None:
        try:
            run = RunRecord(run_id, day, "m", 1, dt.datetime.now(dt.UTC))
            results.start_run(run)
            run.finish("success")
            results.publish(run, [rows], [])
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    first = threading.Thread(target=publish, args=("A", day1))
    first.start()
    try:
        assert inside.wait(30), errors
        other = threading.Thread(target=publish, args=("B", day2))
        other.start()
        other.join(30)
        assert not other.is_alive(), "a publish of another day waited for the open one"
        same = threading.Thread(target=publish, args=("C", day1))
        same.start()
        waiting = pd.DataFrame()
        for _ in range(100):
            waiting = pg_frame(pg_url, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND wait_event = 'advisory' AND datname = current_database()")
            if len(waiting):
                break
            time.sleep(0.1)
        assert len(waiting) == 1 and same.is_alive(), "the same day's publish did not wait"
    finally:
        release.set()
        first.join(60)
    same.join(60)
    assert not errors, errors
    assert set(pg_published(pg_url, pg_schema, day1)["run_id"]) == {"C"}
    assert set(pg_published(pg_url, pg_schema, day2)["run_id"]) == {"B"}
    assert len(pg_published(pg_url, pg_schema, day1)) == 1000


def test_credentials_never_reach_logs_ledger_or_output(tmp_path: Path, sample_db: Path, store: Path, pg_url: str,
                                                       pg_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    secret_url = pg_url.replace("postgres@", f"postgres:{SECRET}@")  # trust auth ignores the password
    assert SECRET in secret_url
    copy_sample(sample_db, pg_url, pg_schema)
    caplog.set_level(logging.DEBUG)
    folder = tmp_path / "ok"
    cfg = _config(folder, sample_db, store, source=_pg_source(secret_url, pg_schema),
                  results=_pg_results(secret_url, f"{pg_schema}_r", folder))
    res = CliRunner().invoke(app, ["run", "--config", str(cfg.path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output and "***" in res.output
    bad = _config(tmp_path / "bad", sample_db, store,
                  source=_pg_source(secret_url.replace(":5432/", ":1/"), pg_schema) | {"connect_timeout_s": 0.5},
                  results=_pg_results(secret_url, f"{pg_schema}_r", tmp_path / "bad"))
    with pytest.raises(SourceError, match="connection refused"):
        pipeline.run_day(bad, SCORE_DAY)
    res = CliRunner().invoke(app, ["run", "--config", str(bad.path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 1 and "connection refused" in res.output and "Traceback" not in res.output
    assert SECRET not in res.output
    runs = pg_ledger(pg_url, f"{pg_schema}_r")
    assert list(runs["status"]) == ["success", "failed", "failed"]
    assert "127.0.0.1:1/test: connection refused" in runs["error"].iloc[-1]
    assert SECRET not in runs.to_csv()
    assert caplog.records and not [r for r in caplog.records if SECRET in r.getMessage()]


def test_wide_table_scores_end_to_end(tmp_path: Path, sample_db: Path, store: Path, pg_url: str,
                                      pg_schema: str) -> None:
    import joblib
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from scoring.models.registry import register_model
    from scoring.models.store import ModelStore

    feats = make_wide_table(pg_url, pg_schema, 2000)
    frame = pg_frame(pg_url, f'SELECT * FROM "{pg_schema}".wide ORDER BY id')
    numeric = [f for i, f in enumerate(feats) if i % 4 != 3]
    text = [f for i, f in enumerate(feats) if i % 4 == 3]
    frame[numeric] = frame[numeric].astype("float64")
    frame["target"] = (frame["f00"].fillna(0) % 3 == 0).astype(int)
    model = make_pipeline(make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numeric), (make_pipeline(SimpleImputer(strategy="constant", fill_value="na"),
                                                   OneHotEncoder(handle_unknown="ignore")), text)),
        LogisticRegression(max_iter=1000))
    model.fit(frame[feats], frame["target"])
    joblib.dump(model, tmp_path / "wide.joblib")
    register_model(ModelStore(store), "wide_model", tmp_path / "wide.joblib", frame[feats], aliases=["champion"])
    cfg = _config(tmp_path, sample_db, store, source=_pg_source(pg_url, pg_schema, "wide") | {
        "timestamp_column": "ts", "key_column": "id"}, model={"name": "wide_model"})
    result = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=300)
    assert result.rows_in == result.rows_scored == 2000
    out = published(cfg.results.path, SCORE_DAY).set_index("source_key")
    expected = pd.Series(model.predict_proba(frame[feats])[:, 1], index=frame["id"].astype(str))
    np.testing.assert_allclose(out.loc[expected.index, "score"].to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
    assert ledger(cfg.results.path).iloc[-1]["rows_in"] == 2000


def test_missing_server_fails_under_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    probe = (
        "import pytest, sys\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-k', 'types', 'tests/storage/test_postgres_source.py']))\n")
    env = {**os.environ, "SCORING_TEST_PG_URL": "postgresql://postgres@127.0.0.1:1/test"}
    skipped = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**env, "CI": "false"})
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout[-2000:]
    failed = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**env, "CI": "true"})
    assert failed.returncode == 1 and "CI=true requires it" in failed.stdout, failed.stdout[-2000:]


def test_extra_tables_are_created_typed_and_replaced_per_partition(tmp_path: Path, pg_url: str, pg_schema: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from scoring.errors import PublishError
    from scoring.storage.results import tables

    spec = tables.TableSpec("drift_test", (
        tables.Column("run_id", "string", False), tables.Column("day", "date", False),
        tables.Column("model_name", "string", False), tables.Column("feature", "string", False),
        tables.Column("psi", "float"), tables.Column("bins", "int64"), tables.Column("alert", "bool"),
        tables.Column("detail", "json")), primary_key=("day", "model_name", "feature"))
    monkeypatch.setitem(tables.EXTRA_TABLES, spec.name, spec)
    results = open_results(ResultsConfig(kind="postgres", url=pg_url, schema=pg_schema,
                                         staging_dir=tmp_path / "staging"))
    results.ensure_schema()
    day = dt.date(2026, 3, 7)

    def publish(run_id: str, feats: list[str]) -> None:
        run = RunRecord(run_id, day, "m", 1, dt.datetime.now(dt.UTC))
        results.start_run(run)
        run.finish("success")
        rows = pa.table({"run_id": [run_id] * len(feats), "day": [day] * len(feats), "model_name": ["m"] * len(feats),
                         "feature": feats, "psi": [0.5, None][: len(feats)], "bins": [10, 12][: len(feats)],
                         "alert": [True, None][: len(feats)], "detail": ['{"edges": [1, 2]}', None][: len(feats)]})
        results.publish(run, [], [], extra={spec.name: rows})

    publish("r1", ["age", "income"])
    publish("r2", ["age"])
    got = pg_frame(pg_url, f'SELECT * FROM "{pg_schema}".drift_test')
    assert got[["run_id", "feature", "psi", "bins", "alert"]].values.tolist() == [["r2", "age", 0.5, 10, True]]
    assert got["detail"].iloc[0] == {"edges": [1, 2]}  # jsonb, decoded by psycopg
    types = dict(pg_frame(pg_url, "SELECT column_name, data_type FROM information_schema.columns WHERE "
                                  "table_schema = %s AND table_name = 'drift_test'", [pg_schema]).values.tolist())
    assert types == {"run_id": "text", "day": "date", "model_name": "text", "feature": "text",
                     "psi": "double precision", "bins": "bigint", "alert": "boolean", "detail": "jsonb"}
    run = RunRecord("r3", day, "m", 1, dt.datetime.now(dt.UTC))
    with pytest.raises(PublishError, match="unknown results table"):
        results.publish(run, [], [], extra={"nope": pa.table({"x": [1]})})
    with pytest.raises(PublishError, match="lack column.*psi"):
        results.publish(run, [], [], extra={spec.name: pa.table({"run_id": ["r3"], "day": [day], "model_name": ["m"],
                                                                  "feature": ["x"]})})


def test_failed_validation_keeps_its_quarantine_rows_on_postgres(tmp_path: Path, sample_db: Path, store: Path,
                                                                  pg_url: str, pg_schema: str) -> None:
    """As on DuckDB (tests/quality/test_batch_rules.py): a run failing the error threshold publishes nothing,
    is ``failed`` in the ledger, and its quarantine rows stay readable, tagged with its run id."""
    from scoring.errors import ValidationFailed
    from tests.quality.helpers import CLEAN_DAY, KEY, day_filter, dirty_source, keys_where

    results = _pg_results(pg_url, pg_schema, tmp_path)
    first = pipeline.run_day(_config(tmp_path / "good", sample_db, store, results=results), CLEAN_DAY)
    db = dirty_source(tmp_path, sample_db, f"UPDATE loan_applications SET loan_amount = -1e9 WHERE {KEY} % 30 = 0")
    bad = keys_where(db, f"{day_filter(CLEAN_DAY)} AND {KEY} % 30 = 0")
    cfg = _config(tmp_path / "bad", db, store, results=results, validation={"error_threshold": 0.02})
    with pytest.raises(ValidationFailed, match="error_threshold"):
        pipeline.run_day(cfg, CLEAN_DAY)
    runs = pg_ledger(pg_url, pg_schema)
    failed = runs.iloc[-1]
    assert list(runs["status"]) == ["success", "failed"] and failed["rows_scored"] == 0
    assert set(pg_published(pg_url, pg_schema, CLEAN_DAY)["run_id"]) == {first.run_id}
    q = pg_frame(pg_url, f'SELECT source_key, column_name FROM "{pg_schema}".quarantine WHERE run_id = %s',
                 [failed["run_id"]])
    assert len(q) == failed["rows_rejected"] == len(bad) > 0
    assert set(q["source_key"]) == bad and set(q["column_name"]) == {"loan_amount"}


def test_publish_sends_each_staged_chunk_in_key_order(tmp_path: Path) -> None:
    """The predictions COPY reads each staged file whole and sends its rows by source_key (B-tree inserts next
    to each other): the same rows, columns completed with the run's constants, each file's rows sorted, files
    in their order; a file without rows adds none."""
    rng = np.random.default_rng(7)
    files = []
    for i, keys in enumerate([[f"k{v:05d}" for v in rng.permutation(500)], [], [f"z{v}" for v in rng.permutation(50)]]):
        path = tmp_path / f"chunk-{i}.parquet"
        pq.write_table(pa.table({"source_key": pa.array(keys, pa.string()),
                                 "score": pa.array(rng.random(len(keys))),
                                 "label": pa.array(np.ones(len(keys), np.int16))}), path)
        files.append(path)
    staged = pa.concat_tables(pq.read_table(f) for f in files)
    schema = postgres_store.arrow_schema(postgres_store.all_tables("predictions")[0])
    constants = {"model_name": "m", "model_version": 3, "run_id": "r", "day": SCORE_DAY,
                 "scored_at": dt.datetime(2026, 3, 8, tzinfo=dt.UTC)}
    sent = pa.Table.from_batches(list(postgres_store._file_batches(files, schema, constants, "source_key")))
    keys = sent.column("source_key").to_pylist()
    assert keys[:500] == sorted(keys[:500]) and keys[500:] == sorted(keys[500:]) and len(keys) == 550
    got = dict(zip(keys, sent.column("score").to_pylist(), strict=True))
    assert got == dict(zip(staged.column("source_key").to_pylist(), staged.column("score").to_pylist(), strict=True))
    assert set(sent.column("model_version").to_pylist()) == {3} and set(sent.column("day").to_pylist()) == {SCORE_DAY}
    unsorted = pa.Table.from_batches(list(postgres_store._file_batches(files, schema, constants)))
    assert unsorted.column("source_key").to_pylist() == staged.column("source_key").to_pylist()
