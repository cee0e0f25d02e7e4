"""Preprocessing as scikit-learn transformers; the same fitted object serves training and scoring."""

from features.pipeline import build_model, build_preprocessor
from features.transformers import CleanInput

__all__ = ["CleanInput", "build_model", "build_preprocessor"]
