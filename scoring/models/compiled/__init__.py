"""Compiled scoring: a model version's trees compiled to C, used only when proven bit-identical.

- ``hgb``: HistGradientBoosting -> Treelite -> TL2cgen (baseline folded, float64, the model's own link);
- ``predictor``: the compiled predictor in the model's place;
- ``proof``: the probe rows and the bitwise comparison;
- ``threads``: threads sized to the cores the process may use;
- ``engine``: ``compile_version`` (with the proof, recorded in the metadata) and ``predictor_for``.
"""

from scoring.models.compiled.engine import ENGINES, compile_version, load_predictor, predictor_for

__all__ = ["ENGINES", "compile_version", "load_predictor", "predictor_for"]
