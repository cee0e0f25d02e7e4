"""A user's own model class (outside the installed packages, so registered with ``--code``)."""

from __future__ import annotations

import numpy as np
import pandas as pd


class OverconfidentModel:
    """A binary 'classifier' whose probabilities are out of [0, 1] or NaN for some rows (a broken model)."""

    classes_ = np.array([0, 1])

    def __init__(self, features: list[str]) -> None:
        self.feature_names_in_ = np.array(features, dtype=object)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        p = np.full(len(frame), 0.5)
        p[np.asarray(frame["credit_score"].fillna(0)) > 800] = 1.7
        p[np.asarray(frame["age"].isna())] = np.nan
        return np.column_stack([1 - p, p])
