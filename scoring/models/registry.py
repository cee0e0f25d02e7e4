"""Register a fitted model (any scikit-learn-compatible estimator saved with joblib) into the store."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from scoring.errors import ModelStoreError
from scoring.models.reference import build_reference
from scoring.models.scorer import positive_index
from scoring.models.signature import features_from_frame
from scoring.models.store import ModelStore, ModelVersion

logger = logging.getLogger(__name__)


def feature_columns(model: Any, frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """The model's input columns: ``feature_names_in_`` when it has them, else the frame's other columns."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return [c for c in frame.columns if c not in exclude]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ModelStoreError(f"training data lacks the model's input columns: {', '.join(map(str, missing))}")
    return [str(n) for n in names]


def metrics_for(scores: np.ndarray, labels: pd.Series | None) -> dict[str, float]:
    """ROC AUC, log loss and positive rate of ``scores`` against ``labels`` (empty without labels)."""
    if labels is None or labels.nunique() < 2:
        return {}
    from sklearn.metrics import log_loss, roc_auc_score

    y = labels.to_numpy()
    return {"roc_auc": float(roc_auc_score(y, scores)), "log_loss": float(log_loss(y, np.clip(scores, 1e-12, 1))),
            "positive_rate": float(np.mean(y)), "rows": int(len(y))}


def register_model(store: ModelStore, name: str, artifact: Path, reference_frame: pd.DataFrame, *,
                   label_column: str | None = None, exclude: set[str] = frozenset(),
                   window: tuple[dt.date, dt.date] | None = None, metrics: dict[str, float] | None = None,
                   aliases: list[str] = (), extra: dict[str, Any] | None = None) -> ModelVersion:
    """Register ``artifact`` with its feature schema and reference statistics from ``reference_frame``.

    Args:
        store: the model store.
        name: model name.
        artifact: joblib file of a fitted estimator or Pipeline with predict_proba.
        reference_frame: rows the model was trained on (or a sample); used for the schema and drift reference.
        label_column: label in ``reference_frame``, for metrics when none are given.
        exclude: other non-feature columns (key, timestamp).
        window: the training data window.
        metrics: metrics computed by the trainer; computed on ``reference_frame`` if None and labels exist.
        aliases: aliases to point at the new version (e.g. ``champion``).
        extra: more metadata to keep.
    """
    if not artifact.is_file():
        raise ModelStoreError(f"artifact {str(artifact)!r} not found")
    try:
        model = joblib.load(artifact)
    except Exception as exc:
        raise ModelStoreError(f"cannot load artifact {str(artifact)!r}: {exc}") from exc
    idx = positive_index(model)
    columns = feature_columns(model, reference_frame, {*(exclude or ()), *([label_column] if label_column else [])})
    features = features_from_frame(reference_frame, columns)
    scores = np.asarray(model.predict_proba(reference_frame[columns])[:, idx], dtype=np.float64)
    labels = reference_frame[label_column] if label_column and label_column in reference_frame else None
    meta = {
        "features": features,
        "estimator": type(model).__name__ if not hasattr(model, "steps") else type(model.steps[-1][1]).__name__,
        "classes": [str(c) for c in getattr(model, "classes_", [])],
        "training_window": {"start": str(window[0]), "end": str(window[1])} if window else None,
        "metrics": metrics if metrics is not None else metrics_for(scores, labels),
        "reference": build_reference(reference_frame, features, scores),
        **(extra or {}),
    }
    return store.register(name, artifact, meta, aliases=list(aliases))
