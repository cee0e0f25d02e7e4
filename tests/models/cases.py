"""Models trained outside the project, one per contract case, on a generated table with every kind of column.

``make_frame`` is the truth: the rows with the dtypes a user trains with. The source tables the tests build
are written from it, and the expected scores are the model's own output on it, never on what the
product converted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.helpers import user_module as load_user_module

START = dt.date(2026, 5, 1)
DAYS = 6
ROWS = 240
TRAIN_DAYS = 4
SCORE_DAY = START + dt.timedelta(days=5)
LEVELS = ["north", "south", "east", "west"]
NUMS = ["x1", "x2", "x3"]
NEW_LEVEL = "central"


USER_CODE = Path(__file__).resolve().parent / "user_code" / "boom_udf.py"


def user_module() -> Any:
    """The user's own module ``boom_udf`` (registered with ``--code``)."""
    return load_user_module("boom_udf", USER_CODE)


def make_frame(seed: int = 3) -> pd.DataFrame:
    """Every day's rows: key ``id``, timestamp ``ts``, features of every kind, and four labels.

    x1 float with NaN, x2 int, x3 float; region text; flag nullable boolean (<NA> on ~20%); visits nullable
    Int64; tag text (never 'boom' in training days). Labels: y_bin 0/1, y_txt 'bad'/'good', y_multi
    low/mid/high, y_reg float.
    """
    rng = np.random.default_rng(seed)
    n = DAYS * ROWS
    day = np.repeat(np.arange(DAYS), ROWS)
    ts = [dt.datetime.combine(START + dt.timedelta(days=int(d)), dt.time()) + dt.timedelta(seconds=int(s))
          for d, s in zip(day, rng.integers(0, 86_399, n), strict=True)]
    x1 = rng.normal(0, 1, n)
    x1[rng.random(n) < 0.05] = np.nan
    x2 = rng.integers(0, 50, n)
    x3 = rng.gamma(2.0, 2.0, n)
    region = rng.choice(LEVELS, n)
    flag = pd.array(np.where(rng.random(n) < 0.5, True, False), dtype="boolean")
    flag[rng.random(n) < 0.2] = pd.NA
    visits = pd.array(rng.integers(0, 9, n), dtype="Int64")
    visits[rng.random(n) < 0.15] = pd.NA
    logit = 0.9 * np.nan_to_num(x1) - 0.04 * x2 + 0.2 * x3 + (region == "north") * 0.8 - 1.0
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p).astype(int)
    frame = pd.DataFrame({
        "id": np.arange(1, n + 1, dtype=np.int64), "ts": pd.to_datetime(ts), "x1": x1, "x2": x2, "x3": x3,
        "region": pd.Series(region, dtype="str"), "flag": flag, "visits": visits,
        "tag": pd.Series(rng.choice(["p", "q"], n), dtype="str"),
        "y_bin": y, "y_txt": pd.Series(np.where(y == 1, "bad", "good"), dtype="str"),
        "y_multi": pd.Series(np.array(["low", "mid", "high"])[np.digitize(logit, [-1.2, 0.0])], dtype="str"),
        "y_reg": 3.0 * np.nan_to_num(x1) + 0.5 * x2 + rng.normal(0, 1, n),
    })
    frame.loc[(day == 5) & (np.arange(n) % 37 == 0), "tag"] = "boom"  # the model of one case raises on these
    frame.loc[(day == 5) & (np.arange(n) % 29 == 0), "region"] = NEW_LEVEL  # a level training never saw
    frame.loc[(day == 5) & (np.arange(n) % 23 == 0), "x3"] = np.nan  # never missing in training
    return frame


def training_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["ts"] < pd.Timestamp(START + dt.timedelta(days=TRAIN_DAYS))].reset_index(drop=True)


def day_rows(frame: pd.DataFrame, day: dt.date = SCORE_DAY) -> pd.DataFrame:
    lo = pd.Timestamp(day)
    return frame[(frame["ts"] >= lo) & (frame["ts"] < lo + pd.Timedelta(days=1))].reset_index(drop=True)


@dataclass
class Case:
    """One model type: how to fit it on training rows, how to give it rows, how to register it."""

    name: str
    fit: Callable[[pd.DataFrame], Any]
    inputs: list[str]
    label: str
    task: str
    register: list[str] = field(default_factory=list)  # extra CLI options
    prepare: Callable[[pd.DataFrame], pd.DataFrame] = lambda f: f  # the user's frame for the model
    numpy: bool = False  # fitted on an ndarray: the model gets .to_numpy() of ``inputs``
    output: dict[str, Any] = field(default_factory=dict)

    def given(self, frame: pd.DataFrame) -> Any:
        x = self.prepare(frame)[self.inputs]
        return x.to_numpy() if self.numpy else x

    def own(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        """The model's own output: what a run must publish as ``score`` for each row."""
        x = self.given(frame)
        if self.task == "regression":
            return np.asarray(model.predict(x), dtype=np.float64)
        proba = np.asarray(model.predict_proba(x), dtype=np.float64)
        if self.task == "multiclass":
            return proba.max(axis=1)
        pos = 0 if self.name == "binary_text_classes" else 1  # classes_ sorted: 'bad' first
        return proba[:, pos]


def _ct(num: list[str], cat: list[str], handle_unknown: str = "ignore") -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), num),
        ("cat", OneHotEncoder(handle_unknown=handle_unknown, sparse_output=False), cat),
    ])


def _categorical(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["region"] = out["region"].astype(pd.CategoricalDtype(LEVELS))
    return out


def cases() -> list[Case]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    base = ["x1", "x2", "x3", "region"]

    def logreg(label: str) -> Callable[[pd.DataFrame], Any]:
        return lambda f: make_pipeline(_ct(NUMS, ["region"]), LogisticRegression(max_iter=500)).fit(f[base], f[label])

    def numpy_fit(f: pd.DataFrame) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression()).fit(f[["x3", "x2"]].fillna(0).to_numpy(), f["y_bin"])

    def nullable(f: pd.DataFrame) -> Any:
        cols = ["x2", "visits", "flag"]
        return make_pipeline(_ct(["x2", "visits"], ["flag"]), LogisticRegression(max_iter=500)).fit(f[cols], f["y_bin"])

    def native(f: pd.DataFrame, kind: str) -> Any:
        x, y = _categorical(f)[base], f["y_bin"]
        if kind == "hgb":
            return HistGradientBoostingClassifier(max_iter=30, categorical_features="from_dtype", random_state=0).fit(x, y)
        if kind == "xgb":
            from xgboost import XGBClassifier

            return XGBClassifier(n_estimators=30, max_depth=3, enable_categorical=True, tree_method="hist",
                                 n_jobs=1).fit(x, y)
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1, n_jobs=1).fit(x, y)

    def key_feature(f: pd.DataFrame) -> Any:
        return make_pipeline(_ct(["id", "x1"], []), LogisticRegression()).fit(f[["id", "x1"]], f["y_bin"])

    def raising(f: pd.DataFrame) -> Any:
        cols = ["x1", "x3", "tag"]
        return make_pipeline(FunctionTransformer(user_module().boom), make_pipeline(StandardScaler()),
                             HistGradientBoostingClassifier(max_iter=20, random_state=0)).fit(f[cols], f["y_bin"])

    def strict_encoder(f: pd.DataFrame) -> Any:
        return make_pipeline(_ct(NUMS, ["region"], "error"), LogisticRegression(max_iter=500)).fit(f[base], f["y_bin"])

    return [
        Case("binary", logreg("y_bin"), base, "y_bin", "binary"),
        Case("binary_text_classes", logreg("y_txt"), base, "y_txt", "binary", ["--positive-class", "bad"]),
        Case("multiclass", lambda f: HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(
            f[NUMS], f["y_multi"]), NUMS, "y_multi", "multiclass", output={"probabilities": True}),
        Case("regression_ridge", lambda f: make_pipeline(_ct(NUMS, ["region"]), Ridge()).fit(f[base], f["y_reg"]),
             base, "y_reg", "regression"),
        Case("regression_hgb", lambda f: HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(
            f[NUMS], f["y_reg"]), NUMS, "y_reg", "regression"),
        Case("numpy_fitted", numpy_fit, ["x3", "x2"], "y_bin", "binary", ["--features", "x3,x2"],
             prepare=lambda f: f.fillna({"x3": 0}), numpy=True),
        Case("nullable_boolean_integer", nullable, ["x2", "visits", "flag"], "y_bin", "binary"),
        Case("hgb_native_categorical", lambda f: native(f, "hgb"), base, "y_bin", "binary", prepare=_categorical),
        Case("xgboost_categorical", lambda f: native(f, "xgb"), base, "y_bin", "binary", prepare=_categorical),
        Case("lightgbm_categorical", lambda f: native(f, "lgbm"), base, "y_bin", "binary", prepare=_categorical),
        Case("key_as_feature", key_feature, ["id", "x1"], "y_bin", "binary"),
        Case("raises_on_some_rows", raising, ["x1", "x3", "tag"], "y_bin", "binary", ["--code", str(USER_CODE)]),
        Case("encoder_refuses_new_levels", strict_encoder, base, "y_bin", "binary"),
    ]
