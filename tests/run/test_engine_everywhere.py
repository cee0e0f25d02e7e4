"""The engine (native | compiled) is chosen once, in the plan, by one rule for every entry point (issue 23/26):
the DAG's tasks called in order, an on-demand job through the CLI, and the online loader all score with the
compiled predictor when ``scoring.engine: compiled`` and the version is proven; what they publish is bit for
bit the native model's own output, and the ledger's ``details.engine`` says ``compiled``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.models.compiled.predictor import CompiledModel
from scoring.models.store import ModelStore
from scoring.run import tasks
from scoring.storage.results import open_results
from scoring.storage.results.jobs_ledger import JobLedger
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published, source_day
from tests.models.test_compiled import compiled_root, root  # noqa: F401 - fixtures (a compiled, proven v1)

runner = CliRunner()


def _own_scores(models: Path, sample_db: Path) -> dict[str, float]:
    """The native model's own scores of the day's source rows, by key."""
    store = ModelStore(models)
    model = store.load(store.get("loan_default", 1))
    src = source_day(sample_db, SCORE_DAY)
    own = model.predict_proba(src[list(model.feature_names_in_)])[:, 1]
    return dict(zip(src["application_id"].astype(str), own, strict=True))


def _assert_bit_identical(keys: list[str], scores: np.ndarray, own: dict[str, float]) -> None:
    assert len(keys) == len(own) > 100
    want = np.array([own[k] for k in keys], dtype=np.float64)
    assert np.array_equal(np.asarray(scores, dtype=np.float64).view(np.uint64), want.view(np.uint64))


@pytest.mark.parametrize("engine", ["compiled", "native"])
def test_dag_tasks_in_order_score_with_the_planned_engine_bit_identical(
        tmp_path: Path, sample_db: Path, root: Path, engine: str) -> None:  # noqa: F811
    cfg = load_config(write_config(tmp_path, sample_db, root, scoring={"engine": engine},
                                   chunking={"rows_per_chunk": 150}))
    planned = json.loads(json.dumps(tasks.plan_run(cfg, DataInterval.for_day(SCORE_DAY), key="manual__1")))
    assert planned["engine"]["engine"] == engine and len(planned["chunks"]) == 4
    chunks = [tasks.score_chunk(cfg, planned, i) for i in tasks.validate_plan(cfg, planned)]
    assert {c["stats"]["engine"] for c in chunks} == {engine}
    counts = tasks.publish(cfg, planned, chunks)
    row = ledger(cfg.results.path).iloc[-1]
    assert (row["status"], row["trigger"], row["run_id"]) == ("success", "airflow", counts["run_id"])
    assert row["rows_in"] == row["rows_scored"] + row["rows_rejected"]
    details = json.loads(row["details"])["engine"]
    assert details["engine"] == engine and details["requested"] == engine and "fallback" not in details
    out = published(cfg.results.path, SCORE_DAY)
    _assert_bit_identical(list(out["source_key"]), out["score"].to_numpy(), _own_scores(root, sample_db))


def test_a_job_with_the_compiled_engine_publishes_the_native_scores_and_says_compiled(
        tmp_path: Path, sample_db: Path, root: Path) -> None:  # noqa: F811
    cfg_path = write_config(tmp_path, sample_db, root, scoring={"engine": "compiled"},
                            chunking={"rows_per_chunk": 150})
    day = tmp_path / "day.parquet"
    source_day(sample_db, SCORE_DAY).to_parquet(day, index=False)
    res = runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), "--input", str(day), "--wait", "--json"])
    assert res.exit_code == 0, res.output
    job_id = json.loads(res.stdout)["job_id"]
    res = runner.invoke(app, ["jobs", "status", job_id, "--config", str(cfg_path), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["state"] == "succeeded" and row["rows_in"] == row["rows_scored"] + row["rows_quarantined"]
    assert row["details"]["engine"]["engine"] == "compiled"
    assert row["details"]["engine"]["requested"] == "compiled"
    got = JobLedger(open_results(load_config(cfg_path).results)).predictions(job_id)
    _assert_bit_identical([r["source_key"] for r in got], np.array([r["score"] for r in got]),
                          _own_scores(root, sample_db))


def test_the_online_loader_uses_the_same_engine_choice(tmp_path: Path, sample_db: Path, root: Path) -> None:  # noqa: F811
    from scoring.online.loaded import ModelSlot

    for engine, kind in (("compiled", CompiledModel), ("native", type(ModelStore(root).load(
            ModelStore(root).get("loan_default", 1))))):
        cfg = load_config(write_config(tmp_path, sample_db, root, scoring={"engine": engine}))
        loaded = ModelSlot(cfg).load()
        assert isinstance(loaded.model, kind) and loaded.engine["engine"] == engine
