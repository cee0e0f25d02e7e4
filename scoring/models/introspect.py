"""What a fitted model says about its inputs: missing-value handling and encoders that refuse new levels.

Walks scikit-learn ``Pipeline`` and ``ColumnTransformer`` objects (any nesting) by their public attributes
(``steps``, ``transformers_``); other estimators are judged by their class. Best effort by design: an
answer of "no" only makes the generated suite stricter, never the scores different.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from scoring.models.contract import Input

# Estimators that route NaN themselves (scikit-learn's HistGradientBoosting*, XGBoost, LightGBM, CatBoost).
NAN_NATIVE = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor", "XGBClassifier", "XGBRegressor",
              "XGBRFClassifier", "XGBRFRegressor", "LGBMClassifier", "LGBMRegressor", "CatBoostClassifier",
              "CatBoostRegressor")
IMPUTERS = ("SimpleImputer", "IterativeImputer", "KNNImputer", "MissingIndicator")
ENCODERS = ("OneHotEncoder", "OrdinalEncoder")


def final_estimator(model: Any) -> Any:
    """The last step of a (nested) Pipeline, else the model itself."""
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def _columns(spec: Any, names: list[str]) -> list[str]:
    """Column names selected by a ColumnTransformer column spec (names, positions, masks or a slice)."""
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, slice):
        return names[spec]
    try:
        items = list(spec)
    except TypeError:
        return []
    if items and all(isinstance(i, bool) for i in items):
        return [n for n, keep in zip(names, items, strict=False) if keep]
    return [names[i] if isinstance(i, int) and i < len(names) else str(i) for i in items]


def _walk(model: Any, columns: list[str], found: list[tuple[Any, list[str]]]) -> None:
    """Collect (transformer, the input columns it sees) for every leaf transformer."""
    if hasattr(model, "steps"):
        for _, step in model.steps:
            if step in (None, "passthrough"):
                continue
            _walk(step, columns, found)
            if hasattr(step, "transformers_"):
                return  # after a ColumnTransformer the columns are no longer the model's inputs
        return
    if hasattr(model, "transformers_"):
        for _, transformer, spec in model.transformers_:
            if transformer in ("drop", "passthrough"):
                continue
            _walk(transformer, _columns(spec, columns), found)
        return
    found.append((model, columns))


def nan_native(model: Any) -> bool:
    """Whether the final estimator handles missing values itself."""
    return type(final_estimator(model)).__name__ in NAN_NATIVE


def imputed_columns(model: Any, columns: list[str]) -> set[str]:
    """Input columns an imputer of the model fills before they reach anything that rejects NaN."""
    found: list[tuple[Any, list[str]]] = []
    _walk(model, columns, found)
    return {c for step, cols in found if type(step).__name__ in IMPUTERS for c in cols}


def erroring_encoders(model: Any, columns: list[str]) -> dict[str, list[Any]]:
    """Columns of an encoder with ``handle_unknown="error"`` -> the levels it knows (``categories_``)."""
    found: list[tuple[Any, list[str]]] = []
    _walk(model, columns, found)
    out: dict[str, list[Any]] = {}
    for step, cols in found:
        if type(step).__name__ in ENCODERS and getattr(step, "handle_unknown", None) == "error":
            for col, cats in zip(cols, getattr(step, "categories_", []), strict=False):
                out[col] = [c for c in list(cats) if not pd.isna(c)]
    return out


def _kind(dtype: Any) -> str:
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "text"


def _missing_spelling(col: pd.Series) -> str:
    """How an object column spells a missing value: the first missing value found decides."""
    if col.dtype != object:
        return "nan"
    for value in col[col.isna()].head(1):
        if value is None:
            return "none"
        if value is pd.NA:
            return "na"
    return "nan"


def infer_inputs(model: Any, frame: pd.DataFrame, names: list[str]) -> tuple[Input, ...]:
    """The inputs of ``model`` as the training ``frame`` holds them, in the order of ``names``.

    Args:
        model: the fitted estimator or Pipeline.
        frame: training rows (the columns ``names`` at least).
        names: the model's inputs, in the order it consumes them.
    """
    native = nan_native(model)
    imputed = imputed_columns(model, names)
    refusing = erroring_encoders(model, names)
    inputs = []
    for name in names:
        col = frame[name]
        dtype = col.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            levels = tuple(json_level(v) for v in dtype.categories)
        else:
            levels = tuple(json_level(v) for v in refusing[name]) if name in refusing else None
        had_missing = bool(col.isna().any())
        why = [w for w, yes in (("missing values in training", had_missing), ("an imputer covers it", name in imputed),
                                (f"{type(final_estimator(model)).__name__} handles NaN natively", native)) if yes]
        inputs.append(Input(name, _kind(dtype), str(dtype), levels, _missing_spelling(col),
                            nullable=bool(why), unknown_levels="error" if name in refusing else "ignore",
                            nullable_why="; ".join(why)))
    return tuple(inputs)


def json_level(value: Any) -> Any:
    """A category level as a JSON value."""
    return value.item() if hasattr(value, "item") else value
