"""scikit-learn HistGradientBoosting -> Treelite -> TL2cgen C code -> a shared library, scoring bit for bit.

What makes the compiled sum equal the model's own, bit for bit (``HistGradientBoosting*._raw_predict``):

- every split is the model's own test: ``x <= num_threshold`` in float64, NaN to the side the model sends
  missing values (``missing_go_to_left``); thresholds and leaf values are passed as float64, unrounded;
- scikit-learn computes ``raw = baseline; raw += tree_1; raw += tree_2; ...`` in float64. The compiled code
  sums ``0 + leaf_1 + leaf_2 + ...`` and would add the baseline last (another rounding); so the baseline is
  folded into the first tree's leaves (``fl(baseline + leaf)``, the same first addition) and Treelite's
  base score is 0;
- TL2cgen tests "present" as ``data[i].missing != -1`` on a union of an int and the double: a present
  value whose low 32 bits are all ones (``0.49999999999999994`` is one: ``0x3FDFFFFFFFFFFFFF``) reads as
  missing and goes the missing side. The proof found it on the one-ulp probes. So no entry is ever handed
  to TL2cgen as missing: NaN is replaced by ``ABSENT`` (-DBL_MAX) and the generated C is patched to test
  ``data[i].fvalue != -DBL_MAX``; rows that hold -DBL_MAX themselves are scored by the model's own code;
- the link (``expit``, softmax, ``exp``) is not compiled: the model's own ``_loss`` turns the raw sums into
  scores, so the last step is the model's own code.

Categorical splits (``categorical_features``) are not compiled (refused as not recognised). Whatever the
reasoning, nothing is used before :mod:`scoring.models.compiled.proof` shows it equal bit for bit.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# -O3 is TL2cgen's own; the two others forbid the compiler from fusing or reassociating float operations
# (the sum of leaves must be done in tree order, one rounding per addition).
FLAGS = ("-ffp-contract=off", "-fno-fast-math")
LIBRARY = "predictor.so"


def is_hgb(estimator: Any) -> bool:
    """True for a fitted HistGradientBoostingClassifier or HistGradientBoostingRegressor."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor)


def unsupported(estimator: Any) -> str | None:
    """Why this HGB estimator is not compiled (None when it can be)."""
    if getattr(estimator, "is_categorical_", None) is not None and np.any(estimator.is_categorical_):
        return "native categorical splits (categorical_features) are not compiled"
    return None


@dataclass
class HGBCompiler:
    """Turns a fitted HGB estimator into a TL2cgen shared library.

    ``threshold`` is the one place a threshold is written into the compiled model; a test overrides it (to
    round to float32) to show that the proof refuses an inexact compiler.
    """

    toolchain: str = "gcc"
    name: str = "tl2cgen"
    tolerance = 0.0  # bit for bit
    version_keys = ("name", "treelite", "tl2cgen")

    def threshold(self, value: float) -> float:
        return float(value)

    def splits(self, estimator: Any) -> set[tuple[int, float]]:
        """(feature index, threshold) of every split of the estimator's trees."""
        out: set[tuple[int, float]] = set()
        for iteration in estimator._predictors:
            for predictor in iteration:
                inner = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
                out.update(zip(inner["feature_idx"].tolist(), inner["num_threshold"].tolist(), strict=True))
        return out

    def load(self, artifact: Path, threads: int) -> CompiledTrees:
        return CompiledTrees(artifact, threads)

    def describe(self) -> dict[str, Any]:
        """Compiler name and versions, recorded with the artifact and re-checked at load."""
        import tl2cgen
        import treelite

        return {"name": self.name, "treelite": treelite.__version__, "tl2cgen": tl2cgen.__version__,
                "toolchain": self.toolchain, "toolchain_version": toolchain_version(self.toolchain),
                "flags": ["-O3", "-std=c99", *FLAGS], "baseline": "folded into the first tree's leaves",
                "missing": "NaN -> -DBL_MAX, patched test fvalue != -DBL_MAX", "link": "the model's own _loss"}

    def build(self, estimator: Any) -> Any:
        """The estimator's trees as a Treelite model (float64 thresholds and leaves, baseline folded).

        Raises:
            ValueError: the estimator has categorical splits.
        """
        from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation

        reason = unsupported(estimator)
        if reason:
            raise ValueError(reason)
        per_iter = int(estimator.n_trees_per_iteration_)
        baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
        classes = len(getattr(estimator, "classes_", ())) if per_iter > 1 else 1
        task = "kMultiClf" if per_iter > 1 else ("kBinaryClf" if hasattr(estimator, "classes_") else "kRegressor")
        trees = [(k, predictor) for iteration in estimator._predictors for k, predictor in enumerate(iteration)]
        builder = ModelBuilder(
            threshold_type="float64", leaf_output_type="float64",
            metadata=Metadata(num_feature=int(estimator.n_features_in_), task_type=task,
                              average_tree_output=False, num_target=1, num_class=[classes],
                              leaf_vector_shape=(1, 1)),
            tree_annotation=TreeAnnotation(num_tree=len(trees), target_id=[0] * len(trees),
                                           class_id=[k if per_iter > 1 else 0 for k, _ in trees]),
            postprocessor=PostProcessorFunc(name="identity_multiclass" if per_iter > 1 else "identity"),
            base_scores=[0.0] * classes,
        )
        folded = set()
        for k, predictor in trees:
            add = baseline[k] if k not in folded else 0.0
            folded.add(k)
            self._tree(builder, predictor.nodes, add)
        return builder.commit()

    def _tree(self, builder: Any, nodes: np.ndarray, baseline: float) -> None:
        builder.start_tree()
        for i, node in enumerate(nodes):
            builder.start_node(i)
            if node["is_leaf"]:
                # fl(baseline + leaf): the same first addition as scikit-learn's ``raw += tree_1``
                leaf = float(np.float64(baseline) + np.float64(node["value"])) if baseline != 0.0 else float(node["value"])
                builder.leaf(leaf)
            else:
                builder.numerical_test(int(node["feature_idx"]), self.threshold(float(node["num_threshold"])),
                                       default_left=bool(node["missing_go_to_left"]), opname="<=",
                                       left_child_key=int(node["left"]), right_child_key=int(node["right"]))
            builder.end_node()
        builder.end_tree()

    def compile(self, estimator: Any, folder: Path, threads: int = 1) -> Path:
        """Build, generate C and compile into ``folder/predictor.so``; returns its path.

        Raises:
            ValueError: not compilable (categorical splits).
            RuntimeError: the toolchain is missing or fails.
        """
        import tl2cgen

        if shutil.which(self.toolchain) is None:
            raise RuntimeError(f"compiler {self.toolchain!r} not found on PATH")
        model = self.build(estimator)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / LIBRARY
        threads = max(1, threads)
        with tempfile.TemporaryDirectory(dir=folder) as source:
            tl2cgen.generate_c_code(model, source, params={"parallel_comp": threads})
            patch_missing_test(Path(source))
            built = tl2cgen.create_shared(self.toolchain, source, nthread=threads, options=list(FLAGS),
                                          long_build_time_warning=False)
            shutil.move(str(built), target)
        return target


PRESENT = re.compile(r"\(data\[(\d+)\]\.missing != -1\)")


def patch_missing_test(source: Path) -> int:
    """Replace TL2cgen's union-based "present" test by ``fvalue != -DBL_MAX`` in every generated C file.

    Returns the number of tests replaced.

    Raises:
        RuntimeError: a ``.missing`` test of another form is left (a TL2cgen change this patch does not know).
    """
    replaced = 0
    for file in sorted(source.glob("*.c")):
        text, count = PRESENT.subn(r"(data[\1].fvalue != -DBL_MAX)", file.read_text())
        if ".missing" in text:
            raise RuntimeError(f"generated {file.name} tests .missing in a form this patch does not know")
        file.write_text("#include <float.h>\n" + text)
        replaced += count
    return replaced


def toolchain_version(toolchain: str) -> str:
    """First line of ``<toolchain> --version`` ("unknown" when it cannot be run)."""
    try:
        out = subprocess.run([toolchain, "--version"], capture_output=True, text=True, timeout=30, check=False)
        return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class CompiledTrees:
    """The loaded shared library: raw sums per row, as ``estimator._raw_predict`` returns them."""

    def __init__(self, library: Path, threads: int) -> None:
        import tl2cgen

        self.threads = max(1, int(threads))
        self._predictor = tl2cgen.Predictor(str(library), nthread=self.threads)
        self.classes = int(self._predictor.num_class[0]) if hasattr(self._predictor.num_class, "__len__") \
            else int(self._predictor.num_class)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw sums of ``x`` (n x features, float64): shape (n, trees per iteration), float64.

        Raises:
            ValueError: ``x`` holds -DBL_MAX, the compiled code's missing marker (the caller scores natively).
        """
        import tl2cgen

        x = np.ascontiguousarray(x, dtype=np.float64)
        # Block by block: the masks, the NaN-replaced copy and TL2cgen's DMatrix (which copies its input) hold
        # BLOCK_ROWS rows, not the whole chunk (two more copies of the chunk put a run's peak RSS above the
        # native run's).
        parts = []
        for start in range(0, max(x.shape[0], 1), BLOCK_ROWS):
            block = x[start:start + BLOCK_ROWS]
            if (block == ABSENT).any():
                raise ValueError("rows hold -DBL_MAX, the compiled code's missing marker")
            missing = np.isnan(block)
            if missing.any():
                block = np.where(missing, ABSENT, block)
            del missing
            raw = self._predictor.predict(tl2cgen.DMatrix(block, dtype="float64"), pred_margin=True)
            parts.append(np.asarray(raw, dtype=np.float64).reshape(block.shape[0], -1))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


ABSENT = -float(np.finfo(np.float64).max)  # -DBL_MAX: a missing value, as the patched C code reads it
BLOCK_ROWS = 16_384  # rows handed to the compiled code at a time (each row is scored alone: blocks change no sum)


def cpu_count() -> int:
    """Cores for the compile (TL2cgen parallel_comp)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
