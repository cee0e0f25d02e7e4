"""LightGBM (``LGBMClassifier`` / ``LGBMRegressor``) -> lleaves (LLVM via llvmlite) -> a native object file.

lleaves reads the booster's own text dump (``model.txt``, thresholds and leaves as LightGBM writes them) and
compiles every tree to machine code, float64 throughout, the objective's transformation (sigmoid, softmax,
identity, exp) included. It is not bitwise equal to LightGBM's own predict (another summation and another
``exp``): issue 26 measured 6.1e-16 at most on 1M rows. So its proof is the issue's tolerance: every output
within ``TOLERANCE`` (1e-12) of the model's own and no class change (``argmax`` of the probabilities, as
LightGBM's ``predict``), on the same probe sets as the HGB compiler, threshold probes from the booster's
own splits included. Anything else is refused, as for HGB.

The object file is specialised for the compiling machine's CPU (``target_cpu``): it is re-checked in every
process that loads it, and a changed lleaves/llvmlite/LLVM version falls back to the native predict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TOLERANCE = 1e-12
MODEL_TEXT = "model.txt"
OBJECT = "predictor.o"


def is_lgbm(estimator: Any) -> bool:
    """True for a fitted lightgbm LGBMClassifier or LGBMRegressor (not imported unless it is one)."""
    return type(estimator).__module__.startswith("lightgbm") and type(estimator).__name__ in (
        "LGBMClassifier", "LGBMRegressor")


def lgbm_unsupported(estimator: Any) -> str | None:
    """Why this LightGBM estimator is not compiled (None when it can be)."""
    booster = estimator.booster_
    if any(_categorical(t["tree_structure"]) for t in booster.dump_model()["tree_info"]):
        return "LightGBM categorical splits are not compiled"
    return None


def _categorical(node: dict[str, Any]) -> bool:
    if "split_index" not in node:
        return False
    return node.get("decision_type") != "<=" or _categorical(node["left_child"]) or _categorical(
        node["right_child"])


def lgbm_splits(estimator: Any) -> set[tuple[int, float]]:
    """(feature index, threshold) of every split of the booster."""
    out: set[tuple[int, float]] = set()

    def walk(node: dict[str, Any]) -> None:
        if "split_index" in node:
            out.add((int(node["split_feature"]), float(node["threshold"])))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in estimator.booster_.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return out


@dataclass
class LleavesCompiler:
    """Turns a fitted LightGBM estimator into an lleaves object file (``folder/predictor.o``)."""

    name: str = "lleaves"
    tolerance: float = TOLERANCE
    version_keys: tuple[str, ...] = ("name", "lleaves", "llvmlite", "llvm", "target_cpu")

    def describe(self) -> dict[str, Any]:
        """Compiler name and versions, recorded with the artifact and re-checked at load."""
        import llvmlite.binding as llvm

        return {"name": self.name, "lleaves": metadata.version("lleaves"),
                "llvmlite": metadata.version("llvmlite"),
                "llvm": ".".join(str(v) for v in llvm.llvm_version_info),
                "target_cpu": llvm.get_host_cpu_name(), "flags": {"use_fp64": True, "raw_score": False}}

    def compile(self, estimator: Any, folder: Path, threads: int = 1) -> Path:
        """Write the booster's text dump and compile it; returns the object file's path.

        Raises:
            RuntimeError: lleaves cannot compile the model.
        """
        import lleaves

        folder.mkdir(parents=True, exist_ok=True)
        text = folder / MODEL_TEXT
        estimator.booster_.save_model(str(text))
        target = folder / OBJECT
        try:
            lleaves.Model(model_file=str(text)).compile(cache=str(target), use_fp64=True)
        except Exception as exc:  # noqa: BLE001 - any lleaves failure is a failed compile
            raise RuntimeError(f"lleaves could not compile the model: {type(exc).__name__}: {exc}") from exc
        return target

    def splits(self, estimator: Any) -> set[tuple[int, float]]:
        return lgbm_splits(estimator)

    def load(self, artifact: Path, threads: int) -> CompiledForest:
        return CompiledForest(artifact, threads)


class CompiledForest:
    """The loaded lleaves predictor: the model's outputs (objective applied) per row."""

    def __init__(self, artifact: Path, threads: int) -> None:
        import lleaves

        self.threads = max(1, int(threads))
        self._model = lleaves.Model(model_file=str(artifact.parent / MODEL_TEXT))
        if not artifact.is_file():
            raise FileNotFoundError(artifact)
        self._model.compile(cache=str(artifact), use_fp64=True)  # loads the cached object file

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """lleaves' predictions of ``x`` (n x features, float64): (n,) or (n, classes), float64."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.asarray(self._model.predict(x, n_jobs=self.threads), dtype=np.float64)
        return out if out.size == x.shape[0] else out.reshape(x.shape[0], -1)
