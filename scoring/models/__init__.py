"""Models wing: the model contract, from a fitted estimator to the scores of one chunk.

- ``store``: the versioned model store (``<store>/<name>/<version>/{model.joblib,metadata.json,code/}``),
  aliases such as ``champion`` with their append-only history, checksum and library-version checks on load.
- ``remote_store``: the same store on an object store (``model.store: s3://...``): a create-only commit object
  per version, alias history as numbered create-only objects; ``cache``: a host's sha256-keyed, re-verified
  local copy of the versions it loads from there.
- ``code``: custom modules a pickle needs (the user's transformers), copied into ``code/`` with their sha256,
  verified and imported from there on load (``code_on_path``), so no PYTHONPATH is needed.
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
