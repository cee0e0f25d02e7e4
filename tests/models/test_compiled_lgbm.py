"""Issue 26: LightGBM scored through lleaves, proven within 1e-12 with no class change, else natively.

Real LightGBM models trained here on the sample data (small: lleaves compiles every tree to machine code);
every published score compared with the model's own ``predict_proba`` / ``predict`` on the same rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest

from scoring.config import load_config
from scoring.models.compiled import compile_version, predictor_for
from scoring.models.compiled.lgbm import TOLERANCE
from scoring.models.compiled.predictor import CompiledLightGBM
from scoring.models.registry import register_model
from scoring.models.store import ModelStore
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published, source_day
from tests.models.test_compiled import CATEGORICAL, EXCLUDE, RANGES, _training

lightgbm = pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def lgbm_root(tmp_path_factory: pytest.TempPathFactory, trained_store: Path, sample_db: Path) -> Path:
    """lgbm_clf v1 (sample preprocessing -> LGBMClassifier) and lgbm_reg v1 (LGBMRegressor), compiled."""
    from features import build_model

    root = tmp_path_factory.mktemp("lgbm") / "models"
    shutil.copytree(trained_store, root)
    store = ModelStore(root)
    frame = _training(sample_db)
    features = [*RANGES, *CATEGORICAL]
    clf = build_model(RANGES, CATEGORICAL, lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, n_jobs=1,
                                                                  random_state=0, verbose=-1))
    clf.fit(frame[features], frame["defaulted"].astype(int))
    reg = build_model(RANGES, CATEGORICAL, lightgbm.LGBMRegressor(n_estimators=30, num_leaves=15, n_jobs=1,
                                                                 random_state=0, verbose=-1))
    reg.fit(frame[features], frame["annual_income"].fillna(0) / 1000 + frame["defaulted"])
    for name, model in (("lgbm_clf", clf), ("lgbm_reg", reg)):
        artifact = root.parent / f"{name}.joblib"
        joblib.dump(model, artifact)
        mv = register_model(store, name, artifact, frame, exclude=EXCLUDE, aliases=["champion"])
        entry = compile_version(store, mv, frame)
        assert entry["status"] == "proven", entry
    return root


@pytest.fixture()
def root(tmp_path: Path, lgbm_root: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(lgbm_root, target)
    return target


def _run_and_compare(tmp_path: Path, sample_db: Path, root: Path, name: str) -> dict:
    cfg = load_config(write_config(tmp_path, sample_db, root, model={"name": name},
                                   scoring={"engine": "auto"}, chunking={"rows_per_chunk": 150}))
    pipeline.run_day(cfg, SCORE_DAY)
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success" and row["rows_in"] == row["rows_scored"] + row["rows_rejected"]
    store = ModelStore(root)
    model = store.load(store.get(name, 1))
    src = source_day(sample_db, SCORE_DAY)
    inputs = src[list(model.feature_names_in_)]
    classifier = hasattr(model, "predict_proba")
    own = model.predict_proba(inputs)[:, 1] if classifier else model.predict(inputs)
    expected = dict(zip(src["application_id"].astype(str), own, strict=True))
    out = published(cfg.results.path, SCORE_DAY)
    assert len(out) == row["rows_scored"] == len(src) > 100
    got = out["score"].to_numpy(dtype=np.float64)
    want = np.array([expected[k] for k in out["source_key"]], dtype=np.float64)
    assert np.max(np.abs(got - want)) <= TOLERANCE
    if classifier:
        labels = dict(zip(src["application_id"].astype(str), model.predict(inputs), strict=True))
        assert [str(labels[k]) for k in out["source_key"]] == out["predicted_class"].tolist()
    return json.loads(row["details"])["engine"]


def test_lightgbm_classifier_scores_a_day_with_lleaves_within_1e_12(tmp_path: Path, sample_db: Path,
                                                                     root: Path) -> None:
    entry = ModelStore(root).get("lgbm_clf", 1).meta["compiled"]
    assert entry["compiler"]["name"] == "lleaves" and entry["proof"]["equality"] == "within 1e-12, same class"
    assert entry["proof"]["rows"]["split_thresholds"] > 100 and entry["preprocess"]["engine"] == "numpy"
    assert set(entry["files_sha256"]) == {"model.txt"}
    engine = _run_and_compare(tmp_path, sample_db, root, "lgbm_clf")
    assert engine["engine"] == "compiled" and engine["compiler"].startswith("lleaves ")


def test_lightgbm_regressor_scores_a_day_with_lleaves_within_1e_12(tmp_path: Path, sample_db: Path,
                                                                    root: Path) -> None:
    engine = _run_and_compare(tmp_path, sample_db, root, "lgbm_reg")
    assert engine["engine"] == "compiled"


def test_a_modified_booster_dump_falls_back(root: Path) -> None:
    store = ModelStore(root)
    mv = store.get("lgbm_clf", 1)
    text = root / "lgbm_clf" / "1" / "compiled" / "model.txt"
    text.write_text(text.read_text().replace("Tree=0", "Tree=0\n", 1))
    model, details = predictor_for(store, mv, "auto")
    assert details["engine"] == "native" and "model.txt is missing or modified" in details["fallback"]
    assert not isinstance(model, CompiledLightGBM)


def test_a_changed_llvm_falls_back_and_says_so(tmp_path: Path, sample_db: Path, root: Path) -> None:
    store = ModelStore(root)
    mv = store.get("lgbm_clf", 1)
    entry = mv.meta["compiled"]
    store.update_meta(mv, "compiled", {**entry, "compiler": {**entry["compiler"], "llvmlite": "0.0.1"}})
    engine = _run_and_compare(tmp_path, sample_db, root, "lgbm_clf")
    assert engine["engine"] == "native" and "llvmlite 0.0.1 ->" in engine["fallback"]
