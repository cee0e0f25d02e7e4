"""Vectorized scoring of one chunk: predict_proba of the positive class, and a thresholded label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.errors import ModelStoreError

PREDICTION_SCHEMA = pa.schema([("source_key", pa.string()), ("score", pa.float64()), ("label", pa.int8())])


@dataclass(frozen=True)
class ScoreSpec:
    """What a chunk needs to be scored, independent of where it came from."""

    key_column: str
    features: tuple[str, ...]
    threshold: float


def positive_index(model: Any) -> int:
    """Column of predict_proba holding the positive class (the last of ``classes_``)."""
    if not hasattr(model, "predict_proba"):
        raise ModelStoreError(f"model {type(model).__name__} has no predict_proba")
    classes = getattr(model, "classes_", None)
    if classes is not None and len(classes) != 2:
        raise ModelStoreError(f"model has {len(classes)} classes; only binary classifiers are scored")
    return 1


def encoded_width(model: Any, n_features: int) -> int:
    """Columns after preprocessing, when the model is a Pipeline that can say; else a guess."""
    try:
        return len(model[:-1].get_feature_names_out())
    except Exception:  # noqa: BLE001 - any estimator without the API falls back to a guess
        return n_features * 4


def score_table(model: Any, table: pa.Table, spec: ScoreSpec) -> pa.Table:
    """Score the rows of ``table``; returns (source_key, score, label) in the same order."""
    if table.num_rows == 0:
        return PREDICTION_SCHEMA.empty_table()
    frame = table.select(list(spec.features)).to_pandas()
    scores = np.asarray(model.predict_proba(frame)[:, positive_index(model)], dtype=np.float64)
    keys = pc.cast(table.column(spec.key_column), pa.string())
    labels = (scores >= spec.threshold).astype(np.int8)
    return pa.table([keys, pa.array(scores), pa.array(labels)], schema=PREDICTION_SCHEMA)
