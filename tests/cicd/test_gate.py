"""The promotion gate (`scoring models promote` / `check`) and `scoring models evaluate`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.models.registry import register_model
from scoring.models.store import ModelStore
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, START, TRAIN_END, write_config
from tests.helpers import source_day

runner = CliRunner()
WINDOW = ["--start", "2026-03-06", "--end", "2026-03-08"]
NAME = "loan_default"


@pytest.fixture()
def gate_cfg(tmp_path: Path, sample_db: Path, store: Path) -> Path:
    return write_config(tmp_path, sample_db, store, promotion={"metric": "roc_auc", "tolerance": 0.0})


def _training(sample_db: Path) -> pd.DataFrame:
    days = (TRAIN_END - START).days + 1
    return pd.concat([source_day(sample_db, START + dt.timedelta(days=i)) for i in range(days)],
                     ignore_index=True)


def _register(store: Path, tmp_path: Path, frame: pd.DataFrame, cols: list[str], labels: pd.Series) -> int:
    import joblib
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(make_column_transformer((SimpleImputer(), cols)), LogisticRegression(max_iter=500))
    model.fit(frame[cols], labels)
    path = tmp_path / f"m{len(list(tmp_path.glob('*.joblib')))}.joblib"
    joblib.dump(model, path)
    # Some of these models are meant to be bad (the gate's business): past registration's chance-level check.
    return register_model(ModelStore(store), NAME, path, frame.assign(defaulted=labels),
                          label_column="defaulted", accept_metrics=True).version


def _clone_of_champion(store: Path, sample_db: Path) -> int:
    """The champion's own artifact registered again: exactly as good as the champion."""
    s = ModelStore(store)
    return register_model(s, NAME, s.get(NAME, 1).artifact, _training(sample_db), label_column="defaulted").version


def _alias(store: Path) -> int:
    return ModelStore(store).aliases(NAME)["champion"]


def test_failed_parity_is_refused(gate_cfg: Path, store: Path, sample_db: Path) -> None:
    version = _clone_of_champion(store, sample_db)
    meta_file = store / NAME / str(version) / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["parity"] = {"passed": False, "error": "outputs differ on 3 of 2000 sample rows"}
    meta_file.write_text(json.dumps(meta))
    res = runner.invoke(app, ["models", "promote", NAME, str(version), "-c", str(gate_cfg), *WINDOW])
    assert res.exit_code == 1
    assert "refused: parity: parity check did not pass (outputs differ on 3 of 2000 sample rows)" in res.output
    assert "refused: champion" not in res.output and "refused: schema" not in res.output
    assert _alias(store) == 1


def test_a_column_the_source_lacks_is_refused(gate_cfg: Path, store: Path, sample_db: Path,
                                              tmp_path: Path) -> None:
    frame = _training(sample_db).assign(bureau_score=lambda f: f["credit_score"] * 0.5)
    version = _register(store, tmp_path, frame, ["credit_score", "bureau_score"], frame["defaulted"])
    res = runner.invoke(app, ["models", "promote", NAME, str(version), "-c", str(gate_cfg), *WINDOW])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.startswith("refused")]
    assert lines[0] == "refused: schema: required column 'bureau_score' (type float) is missing from the source"
    assert _alias(store) == 1


def test_worse_than_the_champion_is_refused_and_force_records_why(gate_cfg: Path, store: Path, sample_db: Path,
                                                                  tmp_path: Path) -> None:
    frame = _training(sample_db)
    noise = pd.Series(np.random.default_rng(0).integers(0, 2, len(frame)))
    version = _register(store, tmp_path, frame, ["age"], noise)  # labels of a coin: no better than chance
    res = runner.invoke(app, ["models", "check", NAME, str(version), "-c", str(gate_cfg), *WINDOW])
    assert res.exit_code == 1
    assert "passed parity" in res.output and "passed schema" in res.output
    assert "FAILED champion: worse than the champion by" in res.output
    res = runner.invoke(app, ["models", "promote", NAME, str(version), "-c", str(gate_cfg), *WINDOW])
    assert res.exit_code == 1
    assert [line.split(":")[1] for line in res.output.splitlines() if line.startswith("refused")] == [" champion"]
    assert _alias(store) == 1
    res = runner.invoke(app, ["models", "promote", NAME, str(version), "-c", str(gate_cfg), *WINDOW, "--force"])
    assert res.exit_code == 1 and "--force needs --reason" in res.output
    res = runner.invoke(app, ["models", "promote", NAME, str(version), "-c", str(gate_cfg), *WINDOW, "--force",
                              "--reason", "incident 42: the champion misreads a new product"])
    assert res.exit_code == 0, res.output
    entry = ModelStore(store).history(NAME)[-1]
    assert entry["version"] == version and entry["forced"] is True
    assert entry["reason"] == "incident 42: the champion misreads a new product" and entry["by"]
    assert entry["gate"]["champion"].startswith("failed: worse than the champion")
    assert entry["gate"]["parity"] == entry["gate"]["schema"] == "passed"


def test_a_good_candidate_is_promoted(gate_cfg: Path, store: Path, sample_db: Path) -> None:
    version = _clone_of_champion(store, sample_db)
    res = runner.invoke(app, ["models", "check", NAME, str(version), "-c", str(gate_cfg), *WINDOW])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["models", "promote", NAME, str(version), "-c", str(gate_cfg), *WINDOW])
    assert res.exit_code == 0, res.output
    entry = ModelStore(store).history(NAME)[-1]
    assert entry["version"] == version == _alias(store) and "forced" not in entry
    assert set(entry["gate"].values()) == {"passed"}
    evaluations = ModelStore(store).evaluations(NAME)
    assert {e["version"] for e in evaluations} == {1, version}
    assert evaluations[-1]["metrics"]["roc_auc"] == evaluations[-2]["metrics"]["roc_auc"]


def test_shadow_days_are_required_when_configured(tmp_path: Path, sample_db: Path, store: Path) -> None:
    version = _clone_of_champion(store, sample_db)
    path = write_config(tmp_path, sample_db, store, promotion={"shadow_days": 1})
    res = runner.invoke(app, ["models", "check", NAME, str(version), "-c", str(path), *WINDOW])
    assert res.exit_code == 1 and "FAILED shadow: " in res.output
    shadowed = write_config(tmp_path, sample_db, store, promotion={"shadow_days": 1},
                            model={"store": str(store), "name": NAME, "challengers": [version]})
    pipeline.run_day(load_config(shadowed), SCORE_DAY)
    res = runner.invoke(app, ["models", "check", NAME, str(version), "-c", str(path), *WINDOW])
    assert res.exit_code == 0, res.output
    assert f"passed shadow: shadow-scored without failure on {SCORE_DAY}..{SCORE_DAY}" in res.output


def test_evaluate_metrics_equal_scikit_learns_on_the_same_rows(cfg_path: Path, store: Path,
                                                              sample_db: Path) -> None:
    from sklearn import metrics as skm

    from scoring.run.evaluate import evaluate_versions

    cfg = load_config(cfg_path)
    s = ModelStore(store)
    days = [dt.date(2026, 3, 6), dt.date(2026, 3, 7)]
    result = evaluate_versions(cfg, [s.get(NAME, 1), s.get(NAME, 2)], *days)
    src = pd.concat([source_day(sample_db, d) for d in days], ignore_index=True)
    y = src["defaulted"].astype(int)
    assert result.rows == len(src)
    for version in (1, 2):
        p = s.load(s.get(NAME, version)).predict_proba(src)[:, 1]
        got = result.metrics[version]
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
        assert got["log_loss"] == pytest.approx(skm.log_loss(y, p), abs=1e-9)
        assert got["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-9)
        assert got["positive_rate"] == pytest.approx(y.mean(), abs=1e-12)
    res = runner.invoke(app, ["models", "evaluate", NAME, "--version", "2", "-c", str(cfg_path),
                              "--start", "2026-03-06", "--end", "2026-03-07"])
    assert res.exit_code == 0, res.output
    assert "v2" in res.output and "v1 (champion)" in res.output and "roc_auc" in res.output
    assert [e["version"] for e in s.evaluations(NAME)] == [2, 1]


def test_python_register_model_moves_the_champion_only_through_the_gate(gate_cfg: Path, store: Path,
                                                                         sample_db: Path, tmp_path: Path) -> None:
    """``register_model(aliases=["champion"])`` refuses to move an existing champion (nothing registered);
    ``force`` needs a reason and is recorded; ``promote`` is the gate the commands use."""
    from scoring.errors import ModelStoreError
    from scoring.run.promotion import PromotionRefused, promote

    s, frame = ModelStore(store), _training(sample_db)
    versions = s.versions(NAME)
    with pytest.raises(ModelStoreError, match="would move champion from version 1 past the promotion gate"):
        register_model(s, NAME, s.get(NAME, 1).artifact, frame, label_column="defaulted", aliases=["champion"])
    with pytest.raises(ModelStoreError, match="force=True needs reason"):
        register_model(s, NAME, s.get(NAME, 1).artifact, frame, label_column="defaulted", aliases=["champion"],
                       force=True)
    assert s.versions(NAME) == versions and _alias(store) == 1  # refused before a version number was taken
    noise = pd.Series(np.random.default_rng(0).integers(0, 2, len(frame)))
    bad = _register(store, tmp_path, frame, ["age"], noise)
    with pytest.raises(PromotionRefused, match="champion: worse than the champion by") as refused:
        promote(load_config(gate_cfg), NAME, bad, start=dt.date(2026, 3, 6), end=dt.date(2026, 3, 8))
    assert [c.name for c in refused.value.checks if not c.passed] == ["champion"] and _alias(store) == 1
    forced = register_model(s, NAME, s.get(NAME, 1).artifact, frame, label_column="defaulted",
                            aliases=["champion", "candidate"], force=True, reason="incident 7: rollback")
    assert _alias(store) == forced.version and s.aliases(NAME)["candidate"] == forced.version
    entry = [e for e in s.history(NAME) if e["alias"] == "champion"][-1]
    assert entry["forced"] is True and entry["reason"] == "incident 7: rollback" and entry["by"]
