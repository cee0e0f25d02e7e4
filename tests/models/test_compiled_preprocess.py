"""Issue 26: the Pipeline's preprocessing computed by NumPy, proven bit-identical, else the Pipeline's own.

Real Pipelines trained here on the sample data; every output compared bit for bit with the model's own.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, QuantileTransformer, StandardScaler

from scoring.models.compiled import compile_version, engine, predictor_for
from scoring.models.compiled.predictor import CompiledModel
from scoring.models.compiled.preprocess import Unsupported, recognise
from scoring.models.registry import register_model
from scoring.models.store import ModelStore
from tests.models.test_compiled import CATEGORICAL, EXCLUDE, RANGES, _training

NUMERIC = list(RANGES)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


def _pipeline(numeric_step: object, unknown: str = "ignore") -> Pipeline:
    """No CleanInput: a ColumnTransformer of imputer+scaler, one-hot, ordinal and a numeric passthrough."""
    encode = ColumnTransformer([
        ("num", numeric_step, NUMERIC[:-1]),
        ("onehot", OneHotEncoder(handle_unknown=unknown, sparse_output=False), CATEGORICAL[:2]),
        ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), CATEGORICAL[2:]),
    ], remainder="passthrough")
    return Pipeline([("encode", encode),
                     ("model", HistGradientBoostingClassifier(max_iter=30, random_state=0))])


def _register(tmp_path: Path, sample_db: Path, model: Pipeline) -> tuple[ModelStore, object, pd.DataFrame]:
    frame = _training(sample_db)
    # Missing levels among the categories are not recognised (the Pipeline's own transform would run):
    # the training rows get an explicit level; the scored rows below still hold nulls (unknown levels).
    frame[CATEGORICAL] = frame[CATEGORICAL].fillna("none")
    x = frame[[*NUMERIC, *CATEGORICAL]]
    model.fit(x, frame["defaulted"].astype(int))
    artifact = tmp_path / "model.joblib"
    joblib.dump(model, artifact)
    store = ModelStore(tmp_path / "models")
    mv = register_model(store, "pre", artifact, frame, exclude=EXCLUDE, aliases=["champion"])
    return store, mv, frame


def _variants(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The same rows with categoricals as Arrow-backed strings, object arrays and pandas Categoricals."""
    x = frame[[*NUMERIC, *CATEGORICAL]].copy()
    out = {"as_read": x}
    out["object"] = x.astype({c: object for c in CATEGORICAL})
    out["categorical"] = x.astype({c: "category" for c in CATEGORICAL})
    nulls = x.copy()
    nulls.loc[nulls.index[::7], NUMERIC[0]] = np.nan
    nulls.loc[nulls.index[::11], CATEGORICAL[0]] = None
    nulls.loc[nulls.index[::13], CATEGORICAL[2]] = "never-seen"
    out["nulls_and_unknown"] = nulls
    return out


def test_recognised_steps_are_computed_by_numpy_and_score_bit_identical(tmp_path: Path, sample_db: Path) -> None:
    model = _pipeline(Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler())]))
    store, mv, frame = _register(tmp_path, sample_db, model)
    entry = compile_version(store, mv, frame)
    assert entry["status"] == "proven"
    assert entry["preprocess"]["engine"] == "numpy", entry["preprocess"]
    levels = sum(len(c) for c in model[0].named_transformers_["onehot"].categories_)
    assert entry["preprocess"]["steps"] == ["impute+scale(7)", f"onehot(2 columns, {levels} outputs)",
                                            "ordinal(2 columns, 2 outputs)", "passthrough(1)"]
    compiled, details = predictor_for(store, store.get("pre", 1), "auto")
    assert details["engine"] == "compiled" and details["preprocess"] == "numpy"
    plan = recognise(model[:-1])
    for name, rows in _variants(frame).items():
        assert _same_bits(plan.transform(rows), model[:-1].transform(rows)), name
        assert _same_bits(compiled.predict_proba(rows), model.predict_proba(rows)), name


def test_unknown_level_with_handle_unknown_error_raises_as_the_pipeline_does(
        tmp_path: Path, sample_db: Path) -> None:
    model = _pipeline(SimpleImputer(strategy="median"), unknown="error")
    store, mv, frame = _register(tmp_path, sample_db, model)
    assert compile_version(store, mv, frame)["preprocess"]["engine"] == "numpy"
    compiled, _ = predictor_for(store, store.get("pre", 1), "auto")
    assert isinstance(compiled, CompiledModel)
    rows = frame[[*NUMERIC, *CATEGORICAL]].iloc[:50].copy()
    assert _same_bits(compiled.predict_proba(rows), model.predict_proba(rows))
    rows.loc[rows.index[3], CATEGORICAL[0]] = "never-seen"
    with pytest.raises(Unsupported):
        recognise(model[:-1]).transform(rows)
    with pytest.raises(ValueError, match="unknown categor"):
        model.predict_proba(rows)
    with pytest.raises(ValueError, match="unknown categor"):
        compiled.predict_proba(rows)  # the Pipeline's own transform runs and raises the same error


def test_unrecognised_step_keeps_the_pipelines_transform_and_says_why(tmp_path: Path, sample_db: Path) -> None:
    model = _pipeline(Pipeline([("impute", SimpleImputer()), ("q", QuantileTransformer(n_quantiles=50))]))
    store, mv, frame = _register(tmp_path, sample_db, model)
    entry = compile_version(store, mv, frame)
    assert entry["status"] == "proven"
    assert entry["preprocess"]["engine"] == "pipeline"
    assert "QuantileTransformer is not a recognised step" in entry["preprocess"]["reason"]
    compiled, details = predictor_for(store, store.get("pre", 1), "auto")
    assert details["engine"] == "compiled" and details["preprocess"] == "pipeline"
    rows = frame[[*NUMERIC, *CATEGORICAL]]
    assert _same_bits(compiled.predict_proba(rows), model.predict_proba(rows))


def test_a_numpy_plan_that_differs_is_refused_with_the_first_row(tmp_path: Path, sample_db: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An inexact plan (one imputer statistic one ulp off) is refused; the trees stay compiled, fed by the
    Pipeline's own transform, and the scores are still the model's own."""
    model = _pipeline(SimpleImputer(strategy="median"))
    store, mv, frame = _register(tmp_path, sample_db, model)

    def off_by_one_ulp(pre: object):
        plan = recognise(pre)
        kind, stats, _ = plan.programs[0].steps[0]
        plan.programs[0].steps[0] = (kind, np.nextafter(stats, np.inf), None)
        return plan

    monkeypatch.setattr(engine, "recognise_preprocess", off_by_one_ulp)
    entry = compile_version(store, mv, frame)
    assert entry["status"] == "proven"
    assert entry["preprocess"]["engine"] == "pipeline"
    assert entry["preprocess"]["reason"].startswith("refused: ") and " row " in entry["preprocess"]["reason"]
    monkeypatch.undo()
    compiled, details = predictor_for(store, store.get("pre", 1), "auto")
    assert details["preprocess"] == "pipeline"
    rows = _variants(frame)["nulls_and_unknown"]
    assert _same_bits(compiled.predict_proba(rows), model.predict_proba(rows))
