"""The compiled predictor: the model's own preprocessing, compiled trees, the model's own link function.

``CompiledModel`` stands where the model stood: the scorer calls ``predict_proba`` / ``predict`` on it as on
the Pipeline, and every other attribute (``classes_``, ``feature_names_in_``, ``model[:-1]``) is the native
model's.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from scoring.models.compiled.hgb import CompiledTrees
from scoring.models.compiled.preprocess import Plan, Unsupported

logger = logging.getLogger(__name__)


# Rows preprocessed and scored at a time by ``predict_proba`` / ``predict``: the trees' inputs (n x encoded
# width, float64) and the compiled code's copies of them are held for one block, not for the whole chunk. Every
# step is row by row (each row's outputs depend on its own values only), so blocks change no score.
BLOCK_ROWS = 16_384


def by_blocks(x: Any, score: Callable[[Any], np.ndarray]) -> np.ndarray:
    """``score(x)``, computed on blocks of ``BLOCK_ROWS`` rows of ``x`` (a DataFrame or an array) and
    concatenated in row order; one call when ``x`` has no more rows than a block."""
    n = len(x)
    if n <= BLOCK_ROWS:
        return score(x)
    rows = x.iloc if hasattr(x, "iloc") else x
    return np.concatenate([score(rows[start:start + BLOCK_ROWS]) for start in range(0, n, BLOCK_ROWS)])


def split_model(model: Any) -> tuple[Any | None, Any]:
    """(the preprocessing part of a Pipeline or None, the final estimator)."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return (model[:-1] if len(model.steps) > 1 else None), model.steps[-1][1]
    return None, model


class CompiledModel:
    """A fitted HGB model (or a Pipeline ending in one) scored with compiled trees.

    Args:
        native: the model as unpickled.
        trees: the loaded shared library of its trees (baseline folded).
        preprocess: the Pipeline's preprocessing computed by NumPy (``preprocess.Plan``, proven), or None:
            the Pipeline's own transform.
    """

    def __init__(self, native: Any, trees: CompiledTrees, preprocess: Plan | None = None) -> None:
        self._native = native
        self._pre, self._estimator = split_model(native)
        self._trees = trees
        self._plan = preprocess if self._pre is not None else None

    @property
    def native(self) -> Any:
        return self._native

    def __getattr__(self, name: str) -> Any:  # classes_, feature_names_in_, n_features_in_, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._native, name)

    def __getitem__(self, item: Any) -> Any:  # ``model[:-1]`` of a Pipeline
        return self._native[item]

    def __len__(self) -> int:
        return len(self._native)

    @property
    def preprocess(self) -> str:
        """``numpy`` (the proven plan) or ``pipeline`` (the Pipeline's own transform)."""
        return "numpy" if self._plan is not None else "pipeline"

    def transformed(self, x: Any) -> Any:
        """The Pipeline's preprocessing of ``x``: the proven NumPy plan, or the Pipeline's own transform for
        a model without one and for chunks the plan does not take (values not of the recognised kinds)."""
        if self._pre is None:
            return x
        if self._plan is not None:
            try:
                return self._plan.transform(x)
            except Unsupported as exc:
                logger.info("preprocessing %s rows with the Pipeline's own transform: %s", len(x), exc)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            return self._pre.transform(x)

    def tree_inputs(self, x: Any) -> np.ndarray:
        """The trees' inputs: the preprocessing (``transformed``), then the estimator's own validation."""
        xt = self.transformed(x)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            return self._estimator._preprocess_X(xt, reset=False)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw sums of the trees' inputs ``x``: compiled, or the model's own for rows the compiled code
        cannot take (they hold its missing marker, -DBL_MAX)."""
        try:
            return self._trees.raw(x)
        except ValueError as exc:
            logger.warning("scoring %s rows with the model's own trees: %s", len(x), exc)
            return np.asarray(self._estimator._raw_predict(x), dtype=np.float64)

    def estimator_outputs(self, x: np.ndarray) -> np.ndarray:
        """Scores from the trees' inputs ``x`` (n x features): predict_proba (n x classes) or predict (n,)."""
        raw = self.raw(x)
        if hasattr(self._estimator, "classes_"):
            return np.asarray(self._estimator._loss.predict_proba(raw), dtype=np.float64)
        return np.asarray(self._estimator._loss.link.inverse(raw.ravel()), dtype=np.float64)

    def predict_proba(self, x: Any) -> np.ndarray:
        """As the model's ``predict_proba``: (n x classes) float64.

        Raises:
            AttributeError: a regressor.
        """
        if not hasattr(self._estimator, "classes_"):
            raise AttributeError("a regressor has no predict_proba")
        return by_blocks(x, lambda rows: self.estimator_outputs(self.tree_inputs(rows)))

    def predict(self, x: Any) -> np.ndarray:
        """As the model's ``predict``: the value (regressor) or the class (classifier, as scikit-learn decides)."""
        if not hasattr(self._estimator, "classes_"):
            return by_blocks(x, lambda rows: self.estimator_outputs(self.tree_inputs(rows)))
        raw = by_blocks(x, lambda rows: self.raw(self.tree_inputs(rows)))
        encoded = (raw.ravel() > 0).astype(int) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
        return self._estimator.classes_[encoded]


def native_estimator_outputs(model: Any, x: np.ndarray) -> np.ndarray:
    """The native final estimator's scores on the trees' inputs ``x``."""
    _, estimator = split_model(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*feature names.*")
        if hasattr(estimator, "classes_"):
            return np.asarray(estimator.predict_proba(x), dtype=np.float64)
        return np.asarray(estimator.predict(x), dtype=np.float64)


class CompiledLightGBM(CompiledModel):
    """A fitted LightGBM model (or a Pipeline ending in one) scored by lleaves (within 1e-12, same class).

    Args:
        native: the model as unpickled.
        trees: the loaded lleaves predictor (``lgbm.CompiledForest``).
        preprocess: as ``CompiledModel``.
    """

    def tree_inputs(self, x: Any) -> np.ndarray:
        """The trees' inputs: the preprocessing, as float64 (LightGBM's own predict reads them as double)."""
        return np.ascontiguousarray(self.transformed(x), dtype=np.float64)

    def raw(self, x: np.ndarray) -> np.ndarray:  # lleaves applies the objective itself
        return self._trees.outputs(x)

    def estimator_outputs(self, x: np.ndarray) -> np.ndarray:
        """As LightGBM's ``predict_proba`` (binary: ``[1 - p, p]``) or ``predict`` (regression)."""
        out = self._trees.outputs(x)
        if not hasattr(self._estimator, "classes_"):
            return out
        if out.ndim == 1:
            return np.vstack((1.0 - out, out)).transpose()
        return out

    def predict(self, x: Any) -> np.ndarray:
        """As LightGBM's ``predict``: the value, or the class of highest probability."""
        out = by_blocks(x, lambda rows: self.estimator_outputs(self.tree_inputs(rows)))
        if not hasattr(self._estimator, "classes_"):
            return out
        return self._estimator.classes_[np.argmax(out, axis=1)]
