"""Models wing: the model contract, from a fitted estimator to the scores of one chunk.

- ``store``: the versioned model store (``<store>/<name>/<version>/{model.joblib,metadata.json}``),
  aliases such as ``champion`` with their append-only history, checksum and library-version checks on load.
- ``registry``: register a fitted scikit-learn-compatible estimator or Pipeline with its feature schema,
  metrics and reference statistics.
- ``signature``: the feature schema (input names and logical types) kept with every version.
- ``reference``: training reference statistics (bins, category shares) and PSI.
- ``scorer``: vectorized scoring of one chunk (which ``predict_proba`` column is the score).
- ``training``: ``scoring train``, fit the configured features Pipeline on labelled source rows.

May import: ``scoring.storage`` (to read training rows, file checksums), ``features`` and the ground floor.
Never ``quality``, ``reports``, ``run`` or ``cli``: the expectation suite of a new version is written by the
caller (``scoring.quality.suite.write_generated_suite``).
"""

from __future__ import annotations

from scoring.models.store import ModelStore, ModelVersion

__all__ = ["ModelStore", "ModelVersion"]
