"""Shadow scoring: challengers scored in the champion's run, published atomically beside it."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from scoring.config import load_config
from scoring.models.store import ModelStore
from scoring.run import pipeline
from scoring.storage.results import duckdb_store
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published, source_day

RUN_COLUMNS = ["run_id", "scored_at"]


def _table(results: Path, table: str) -> pd.DataFrame:
    with duckdb.connect(str(results), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table} ORDER BY ALL").to_df()


def _config(folder: Path, sample_db: Path, store: Path, challengers: list[str]):
    folder.mkdir(exist_ok=True)
    return load_config(write_config(folder, sample_db, store,
                                    model={"store": str(store), "name": "loan_default",
                                           "challengers": challengers}))


def _psi(reference: np.ndarray, other: np.ndarray) -> float:
    """PSI written out independently: decile edges of the reference, np.digitize, shares floored at 1e-6."""
    edges = np.unique(np.quantile(reference, [i / 10 for i in range(1, 10)]))
    p = np.array([(np.digitize(reference, edges) == b).mean() for b in range(len(edges) + 1)])
    q = np.array([(np.digitize(other, edges) == b).mean() for b in range(len(edges) + 1)])
    p, q = np.maximum(p, 1e-6), np.maximum(q, 1e-6)
    return float(((q - p) * np.log(q / p)).sum())


def test_shadow_run_publishes_both_and_leaves_the_champion_alone(tmp_path: Path, sample_db: Path,
                                                                  store: Path) -> None:
    plain = _config(tmp_path / "plain", sample_db, store, [])
    shadowed = _config(tmp_path / "shadowed", sample_db, store, ["challenger"])
    pipeline.run_day(plain, SCORE_DAY, rows_per_chunk=97)
    result = pipeline.run_day(shadowed, SCORE_DAY, rows_per_chunk=97)

    # The champion's predictions are exactly those of a run without challengers.
    a = published(plain.results.path, SCORE_DAY).drop(columns=RUN_COLUMNS)
    b = published(shadowed.results.path, SCORE_DAY).drop(columns=RUN_COLUMNS)
    pd.testing.assert_frame_equal(a, b)
    assert set(b["model_version"]) == {1}

    # The challenger's equal its own model output.
    shadow = _table(shadowed.results.path, "shadow_predictions")
    src = source_day(sample_db, SCORE_DAY)
    model = ModelStore(store).load(ModelStore(store).get("loan_default", 2))
    expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
    assert len(shadow) == len(b) == len(src) and shadow["source_key"].is_unique
    assert set(shadow["model_version"]) == {2} and set(shadow["champion_version"]) == {1}
    assert set(shadow["run_id"]) == {result.run_id}
    np.testing.assert_allclose(shadow["score"], [expected[k] for k in shadow["source_key"]], rtol=0, atol=1e-9)
    assert (shadow["label"] == (shadow["score"] >= 0.5).astype(int)).all()

    # The comparison summary matches values computed here by hand.
    summary = _table(shadowed.results.path, "shadow_summary")
    assert len(summary) == 1
    row = summary.iloc[0]
    both = b[["source_key", "score", "label"]].merge(shadow[["source_key", "score", "label"]], on="source_key",
                                                     suffixes=("", "_c"))
    k = math.ceil(len(both) / 10)
    top = set(both.sort_values(["score", "source_key"], ascending=[False, True])["source_key"][:k])
    top_c = set(both.sort_values(["score_c", "source_key"], ascending=[False, True])["source_key"][:k])
    assert row["rows"] == len(both)
    assert row["rank_correlation"] == pytest.approx(both["score"].corr(both["score_c"], method="spearman"),
                                                    abs=1e-12)
    assert row["top_decile_overlap"] == pytest.approx(len(top & top_c) / k, abs=1e-12)
    assert row["mean_diff"] == pytest.approx(both["score_c"].mean() - both["score"].mean(), abs=1e-12)
    assert row["positive_rate_diff"] == pytest.approx(both["label_c"].mean() - both["label"].mean(), abs=1e-12)
    assert row["psi"] == pytest.approx(_psi(both["score"].to_numpy(), both["score_c"].to_numpy()), abs=1e-12)
    assert '"shadow": {"2": {"status": "scored"' in ledger(shadowed.results.path).iloc[-1]["details"]

    # Report views read the champion only.
    with duckdb.connect(str(shadowed.results.path), read_only=True) as con:
        versions = con.sql("SELECT DISTINCT model_version FROM daily_summary").fetchall()
    assert versions == [(1,)]


def test_failure_before_commit_leaves_neither(tmp_path: Path, sample_db: Path, store: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(tmp_path / "run", sample_db, store, ["2"])
    good = pipeline.run_day(cfg, SCORE_DAY)
    before_pred = published(cfg.results.path, SCORE_DAY)
    before_shadow = _table(cfg.results.path, "shadow_predictions")
    assert len(before_shadow) == len(before_pred)

    def boom(run) -> None:
        raise RuntimeError("injected crash before commit")

    monkeypatch.setattr(duckdb_store, "before_commit", boom)
    other = _config(tmp_path / "run", sample_db, store, [])  # same results file, the day rerun without shadow
    with pytest.raises(RuntimeError, match="injected"):
        pipeline.run_day(other, SCORE_DAY)
    with pytest.raises(RuntimeError, match="injected"):
        pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=50)
    after_shadow = _table(cfg.results.path, "shadow_predictions")
    pd.testing.assert_frame_equal(after_shadow, before_shadow)
    assert set(published(cfg.results.path, SCORE_DAY)["run_id"]) == {good.run_id}
    assert set(after_shadow["run_id"]) == {good.run_id}


def test_a_broken_challenger_never_fails_the_day(tmp_path: Path, sample_db: Path, store: Path) -> None:
    cfg = _config(tmp_path / "run", sample_db, store, ["no_such_alias", "2"])
    (store / "loan_default" / "2" / "model.joblib").write_bytes(b"corrupted")
    result = pipeline.run_day(cfg, SCORE_DAY)
    assert result.status == "success" and result.rows_scored > 0
    assert _table(cfg.results.path, "shadow_predictions").empty
    details = ledger(cfg.results.path).iloc[-1]["details"]
    assert '"2": {"status": "failed", "error": "model loan_default v2: artifact checksum mismatch' in details
    assert '"no_such_alias": {"status": "failed"' in details


def test_plan_steps_score_challengers_as_ordinary_chunks(tmp_path: Path, sample_db: Path, store: Path) -> None:
    """The DAG's steps: challengers' chunks come out of validate beside the champion's, each scored by its own
    call (a mapped task), and publish gives what the CLI gives."""
    from scoring.dates import DataInterval
    from scoring.run import plan as steps

    cli = _config(tmp_path / "cli", sample_db, store, ["challenger"])
    pipeline.run_day(cli, SCORE_DAY, rows_per_chunk=150)
    cfg = _config(tmp_path / "dag", sample_db, store, ["challenger"])
    plan = steps.plan_run(cfg, DataInterval.for_day(SCORE_DAY), rows_per_chunk=150, key="manual__1").to_json()
    assert plan["challengers"] == [2] and len(plan["chunks"]) > 1
    refs = steps.validate_plan(cfg, plan)
    assert refs == [*range(len(plan["chunks"])), *({"challenger": 2, "index": i}
                                                     for i in range(len(plan["chunks"])))]
    chunks = [steps.score_planned_chunk(cfg, plan, ref) for ref in refs]
    counts = steps.publish_plan(cfg, plan, chunks)
    assert counts["rows_scored"] > 0
    for table in ("predictions", "shadow_predictions", "shadow_summary"):
        a = _table(cli.results.path, table).drop(columns=["run_id", "scored_at"], errors="ignore")
        b = _table(cfg.results.path, table).drop(columns=["run_id", "scored_at"], errors="ignore")
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-12)
