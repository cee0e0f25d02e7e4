from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from features import CleanInput, build_model
from features.transformers import MISSING_LEVEL

RANGES = {"age": (18.0, 120.0), "income": (0.0, None)}


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [25, 999, None, 40, 17],
        "income": [1000.0, -5.0, np.inf, -np.inf, 2.5],
        "city": ["a", None, "b", "a", "c"],
    })


def test_clean_input_turns_impossible_values_into_missing_without_mutating_input() -> None:
    raw = frame()
    before = raw.copy()
    out = CleanInput(ranges=RANGES, categorical=["city"]).fit(raw).transform(raw)
    assert out["age"].tolist()[0] == 25
    assert np.isnan(out["age"].to_numpy()[[1, 2, 4]]).all()  # > max, null, < min
    assert np.isnan(out["income"].to_numpy()[[1, 2, 3]]).all()  # negative, +inf, -inf
    assert out["income"].tolist()[4] == 2.5
    assert out["city"].tolist() == ["a", MISSING_LEVEL, "b", "a", "c"]
    pd.testing.assert_frame_equal(raw, before)


def test_clean_input_names_missing_columns() -> None:
    with pytest.raises(KeyError, match="city"):
        CleanInput(ranges=RANGES, categorical=["city"]).fit(frame().drop(columns="city"))


def test_strings_in_numeric_columns_become_missing() -> None:
    raw = frame().assign(age=["25", "x", None, "40", "17"])
    out = CleanInput(ranges=RANGES, categorical=["city"]).fit_transform(raw)
    assert out["age"].tolist()[0] == 25 and np.isnan(out["age"].to_numpy()[1])


def test_pipeline_ignores_unknown_levels_and_is_the_same_object_for_scoring() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"age": rng.integers(18, 90, 200), "income": rng.uniform(0, 1e5, 200),
                          "city": rng.choice(["a", "b", "c"], 200)})
    y = (train["income"] > 5e4).astype(int)
    model = build_model(RANGES, ["city"], LogisticRegression()).fit(train, y)
    unseen = train.head(3).assign(city=["zzz", "a", None])
    proba = model.predict_proba(unseen)
    assert proba.shape == (3, 2) and np.all((proba >= 0) & (proba <= 1))
    names = model[:-1].get_feature_names_out()
    assert len(names) == 2 + 3  # two numerics, three known levels (unknown/missing ignored)
