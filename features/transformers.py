"""Input cleaning: impossible values become missing before imputation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

MISSING_LEVEL = "__missing__"


class CleanInput(TransformerMixin, BaseEstimator):
    """Coerce numeric columns to float, turn out-of-range and infinite values into NaN, and
    give categorical columns a plain object dtype with an explicit missing level.

    Args:
        ranges: numeric column -> (min, max) valid range; either bound may be None.
        categorical: categorical column names.

    The input frame is never modified; a new frame with only the known columns is returned.
    """

    def __init__(self, ranges: dict[str, tuple[float | None, float | None]] | None = None,
                 categorical: list[str] | None = None) -> None:
        self.ranges = ranges
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: object = None) -> CleanInput:  # noqa: N803 - sklearn convention
        self._check(X)
        self.feature_names_in_ = np.array(self._columns(), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def _columns(self) -> list[str]:
        return list(self.ranges or {}) + list(self.categorical or [])

    def _check(self, X: pd.DataFrame) -> None:  # noqa: N803
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"CleanInput expects a pandas DataFrame, got {type(X).__name__}")
        missing = [c for c in self._columns() if c not in X.columns]
        if missing:
            raise KeyError(f"missing input columns: {', '.join(missing)}")

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        self._check(X)
        out: dict[str, object] = {}
        for col, (low, high) in (self.ranges or {}).items():
            values = pd.to_numeric(X[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(values)
            if low is not None:
                bad |= values < low
            if high is not None:
                bad |= values > high
            out[col] = np.where(bad, np.nan, values)
        for col in self.categorical or []:
            values = X[col].to_numpy(dtype=object, na_value=MISSING_LEVEL)
            if not pd.api.types.is_string_dtype(X[col]):
                # Non-string levels (e.g. integer codes) become their text, the same at fit and score time.
                values = np.array([str(v) for v in values], dtype=object)
            out[col] = values
        return pd.DataFrame(out, index=X.index)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.array(self._columns(), dtype=object)
