"""The model Pipeline: clean -> impute/scale numerics, one-hot categoricals -> estimator."""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.transformers import CleanInput


def build_preprocessor(ranges: dict[str, tuple[float | None, float | None]],
                       categorical: list[str]) -> Pipeline:
    """Preprocessing steps only; unknown categorical levels are ignored at scoring time.

    Args:
        ranges: numeric column -> (min, max) valid range.
        categorical: categorical column names.
    """
    numeric = list(ranges)
    encode = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
             numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype="float64"),
             categorical),
        ],
        verbose_feature_names_out=True,
    )
    return Pipeline([("clean", CleanInput(ranges=ranges, categorical=categorical)), ("encode", encode)])


def build_model(ranges: dict[str, tuple[float | None, float | None]], categorical: list[str],
                estimator: BaseEstimator) -> Pipeline:
    """Preprocessing and estimator in one Pipeline, so training and scoring share one object."""
    pre = build_preprocessor(ranges, categorical)
    return Pipeline([*pre.steps, ("model", estimator)])
