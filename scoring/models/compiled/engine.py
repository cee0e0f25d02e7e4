"""Compile a model version (with its proof) and hand the scorer a predictor for the configured engine.

``compile_version`` runs at registration or with ``scoring models compile NAME VERSION``: it compiles the
version's trees, proves the compiled predictor bit-identical to the model's own predict
(:mod:`scoring.models.compiled.proof`) and records the outcome in the version's metadata under
``compiled``: ``status`` proven | refused | not_compiled, the artifact's sha256, the compiler and its
versions, the flags, the proof (rows tried per probe set, or the first differing row), and the re-check
sample kept beside the artifact.

``predictor_for`` is what a run calls once per process: ``engine`` native | compiled | auto. A compiled
predictor is used only when the version was proven, the artifact's sha256 and the compiler versions are the
recorded ones, and the re-check at load (the stored sample scored by both engines in this process: the
CPU, the C maths library and the loaded code are this process's) is bit-identical; otherwise the native
model scores and the returned details say why (the run puts them in its ledger row).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.errors import ModelStoreError
from scoring.models.compiled.background import in_progress
from scoring.models.compiled.hgb import HGBCompiler, cpu_count, is_hgb, unsupported
from scoring.models.compiled.lgbm import LleavesCompiler, is_lgbm, lgbm_unsupported
from scoring.models.compiled.predictor import (
    CompiledLightGBM,
    CompiledModel,
    native_estimator_outputs,
    split_model,
)
from scoring.models.compiled.preprocess import NotRecognised, Plan, edge_rows
from scoring.models.compiled.preprocess import prove as prove_plan
from scoring.models.compiled.preprocess import recognise as recognise_preprocess
from scoring.models.compiled.proof import category_rows, first_difference, threshold_rows
from scoring.models.compiled.threads import limit_threads, threads_per_worker
from scoring.models.contract import contract_of
from scoring.models.scorer import model_input, raw_outputs
from scoring.models.store import ModelStore, ModelVersion
from scoring.storage.checksums import sha256_file

logger = logging.getLogger(__name__)

ENGINES = ("native", "compiled", "auto")
FOLDER = "compiled"
SAMPLE_FILE = "recheck_rows.parquet"
PROBES_FILE = "recheck_probes.npy"
RECHECK_ROWS = 2000
PROOF_ROWS = 20_000  # rows of a given frame tried by the proof (all of it when smaller)


def recognise(model: Any) -> str | None:
    """None when the model's family is compiled; else why it keeps its own predict (one line)."""
    _, estimator = split_model(model)
    if is_lgbm(estimator):
        return lgbm_unsupported(estimator)
    if not is_hgb(estimator):
        return (f"{type(estimator).__name__} keeps its own predict: only HistGradientBoosting and LightGBM are "
                "compiled (docs/compiled-scoring.md)")
    return unsupported(estimator)


Compiler = HGBCompiler | LleavesCompiler


def compiler_for(model: Any) -> Compiler:
    """The compiler of the model's family: lleaves for LightGBM, Treelite/TL2cgen for HistGradientBoosting."""
    _, estimator = split_model(model)
    return LleavesCompiler() if is_lgbm(estimator) else HGBCompiler()


def _current(recorded: dict[str, Any]) -> Compiler:
    """The recorded compiler as installed in this process (its versions now)."""
    if recorded.get("name") == LleavesCompiler.name:
        return LleavesCompiler()
    return HGBCompiler(toolchain=recorded.get("toolchain", "gcc"))


def _compiled_model(native: Any, compiler: Compiler, artifact: Path, threads: int,
                    plan: Plan | None) -> CompiledModel:
    cls = CompiledLightGBM if isinstance(compiler, LleavesCompiler) else CompiledModel
    return cls(native, compiler.load(artifact, threads), plan)


def _frame_sets(frame: pd.DataFrame, names: list[str], categorical: list[str], training: pd.DataFrame | None,
                holdout: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    sets = {"registration_sample": frame[names].iloc[:PROOF_ROWS]}
    sets["category_levels"] = category_rows(frame[names], categorical)
    if training is not None:
        sets["training"] = training[names]
    if holdout is not None:
        sets["holdout"] = holdout[names]
    return {k: v for k, v in sets.items() if len(v)}


def _prove(native: Any, compiled: CompiledModel, sets: dict[str, pd.DataFrame], contract: Any,
           probes: np.ndarray, tolerance: float = 0.0) -> tuple[dict[str, int], Any]:
    """Rows tried per probe set and the first difference (None when everything is bit-identical, or within
    ``tolerance`` and the same class)."""
    tried: dict[str, int] = {}
    for name, rows in sets.items():
        diff = first_difference(name, raw_outputs(native, rows, contract), raw_outputs(compiled, rows, contract),
                                tolerance)
        tried[name] = len(rows)
        if diff:
            return tried, diff
    diff = first_difference("split_thresholds", native_estimator_outputs(native, probes),
                            compiled.estimator_outputs(probes), tolerance)
    tried["split_thresholds"] = len(probes)
    return tried, diff


def prove_preprocess(pre: Any, sets: dict[str, pd.DataFrame], contract: Any) -> tuple[Plan | None, dict[str, Any]]:
    """The Pipeline's preprocessing by NumPy when recognised and proven bit-identical on the proof's sets
    (and edge rows: NaN, infinities, out-of-range values, missing and never-seen levels); else None and the
    reason (the Pipeline's own transform runs). Returns (plan or None, the metadata entry)."""
    if pre is None:
        return None, {"engine": "none", "reason": "the model is not a Pipeline"}
    try:
        plan = recognise_preprocess(pre)
    except NotRecognised as exc:
        logger.info("preprocessing by the Pipeline's own transform: %s", exc)
        return None, {"engine": "pipeline", "reason": f"not recognised: {exc}"}
    inputs = {k: model_input(v, contract) for k, v in sets.items()}
    base = sets["registration_sample"]
    inputs["edge_values"] = model_input(edge_rows(base, plan), contract)
    if not all(isinstance(v, pd.DataFrame) for v in inputs.values()):
        return None, {"engine": "pipeline", "reason": "not recognised: the model takes arrays, not named columns"}
    tried, diff = prove_plan(pre, plan, inputs)
    if diff:
        logger.warning("preprocessing by the Pipeline's own transform: the NumPy plan differs: %s", diff)
        return None, {"engine": "pipeline", "reason": f"refused: {diff}", "rows": tried}
    return plan, {"engine": "numpy", "steps": plan.describe(), "rows": tried, "equality": "bitwise float64"}


def compile_version(store: ModelStore, mv: ModelVersion, frame: pd.DataFrame, *,
                    compiler: Compiler | None = None, training: pd.DataFrame | None = None,
                    holdout: pd.DataFrame | None = None) -> dict[str, Any]:
    """Compile ``mv``, prove it exact and record the outcome in its metadata (``compiled``).

    Args:
        store: the model store holding ``mv``.
        mv: the version.
        frame: the registration sample (the model's inputs, as in training).
        compiler: the compiler (default: the family's, ``compiler_for``; tests inject an inexact one).
        training: the whole training frame, tried too when given.
        holdout: a held-out sample, tried too when given.

    Returns:
        The recorded entry; ``status`` is ``proven``, ``refused`` (with ``first_difference``) or
        ``not_compiled`` (with ``reason``).
    """
    if not isinstance(mv.path, Path):
        raise ModelStoreError(f"{mv.name} v{mv.version} is on an object store ({mv.path}): compiled scoring needs "
                              "a local model store for now; runs score with the model's own predict")
    native = store.load(mv)
    compiler = compiler or compiler_for(native)
    reason = recognise(native)
    if reason:
        entry: dict[str, Any] = {"status": "not_compiled", "reason": reason}
        logger.info("%s v%s not compiled: %s", mv.name, mv.version, reason)
        store.update_meta(mv, "compiled", entry)
        return entry
    contract = contract_of(mv.meta)
    names = list(contract.names)
    categorical = [i.name for i in contract.inputs if i.kind in ("categorical", "text", "boolean")]
    clock = time.monotonic()
    work = Path(tempfile.mkdtemp(dir=mv.path, prefix=".compiling-"))
    try:
        pre, estimator = split_model(native)
        try:
            library = compiler.compile(estimator, work, threads=cpu_count())
        except (RuntimeError, ValueError) as exc:
            entry = {"status": "not_compiled", "reason": f"compile failed: {exc}"[:300]}
            logger.warning("%s v%s not compiled: %s", mv.name, mv.version, entry["reason"])
            store.update_meta(mv, "compiled", entry)
            return entry
        compile_s = round(time.monotonic() - clock, 3)
        sets = _frame_sets(frame, names, categorical, training, holdout)
        plan, pre_entry = prove_preprocess(pre, sets, contract)
        compiled = _compiled_model(native, compiler, library, threads_per_worker(), plan)
        base = compiled.tree_inputs(model_input(sets["registration_sample"], contract))
        probes = threshold_rows(base, estimator, compiler.splits(estimator))
        tolerance = compiler.tolerance
        tried, diff = _prove(native, compiled, sets, contract, probes, tolerance)
        equality = "bitwise float64" if not tolerance else f"within {tolerance:g}, same class"
        entry = {"compiler": compiler.describe(), "compile_s": compile_s, "preprocess": pre_entry,
                 "proof": {"rows": tried, "equality": equality, "seconds":
                           round(time.monotonic() - clock - compile_s, 3)}}
        if diff:
            shutil.rmtree(mv.path / FOLDER, ignore_errors=True)  # an earlier proven artifact is not this proof's
            entry.update(status="refused", first_difference=diff.describe())
            logger.warning("%s v%s: compiled predictor refused, %s", mv.name, mv.version, diff.describe())
            store.update_meta(mv, "compiled", entry)
            return entry
        rng = np.random.default_rng(0)
        keep = np.sort(rng.choice(len(probes), min(RECHECK_ROWS, len(probes)), replace=False))
        np.save(work / PROBES_FILE, probes[keep])
        sets["registration_sample"].iloc[:RECHECK_ROWS].to_parquet(work / SAMPLE_FILE)
        target = mv.path / FOLDER
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
        artifact = target / library.name
        files = {f.name: sha256_file(f) for f in sorted(target.iterdir())
                 if f.is_file() and f.name not in (library.name, SAMPLE_FILE, PROBES_FILE)}
        entry.update(status="proven", artifact=f"{FOLDER}/{library.name}", sha256=sha256_file(artifact),
                     files_sha256=files,
                     recheck={"rows": f"{FOLDER}/{SAMPLE_FILE}", "rows_sha256": sha256_file(target / SAMPLE_FILE),
                              "probes": f"{FOLDER}/{PROBES_FILE}",
                              "probes_sha256": sha256_file(target / PROBES_FILE)})
        logger.info("%s v%s compiled and proven (%s) on %s rows", mv.name, mv.version, equality,
                    sum(tried.values()))
        store.update_meta(mv, "compiled", entry)
        return entry
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _native(model: Any, details: dict[str, Any], why: str | None) -> tuple[Any, dict[str, Any]]:
    if why:
        details["fallback"] = why
    details.pop("preprocess", None)
    details["engine"] = "native"
    return model, details


def _recheck(native: Any, compiled: CompiledModel, mv: ModelVersion, entry: dict[str, Any]) -> str | None:
    """Why the stored sample scores differently here (None when bit-identical)."""
    recheck = entry.get("recheck") or {}
    rows_file, probes_file = mv.path / recheck.get("rows", "?"), mv.path / recheck.get("probes", "?")
    for file, key in ((rows_file, "rows_sha256"), (probes_file, "probes_sha256")):
        if not file.is_file() or sha256_file(file) != recheck.get(key):
            return f"re-check sample {file.name} is missing or modified"
    from threadpoolctl import threadpool_limits

    contract = contract_of(mv.meta)
    rows = pd.read_parquet(rows_file)
    tolerance = _current(entry.get("compiler") or {}).tolerance
    # The native side on one thread: each row's score is its own (threads only split the rows, so no score
    # changes), and a few thousand rows through ~100 trees are one short parallel region per tree, where
    # OpenMP's spinning and waiting for a descheduled thread cost more than the work (0.48 vs 0.09 CPU s on a
    # busy 2-core machine).
    with threadpool_limits(limits=1):
        native_rows = raw_outputs(native, rows, contract)
    diff = first_difference("recheck_rows", native_rows, raw_outputs(compiled, rows, contract), tolerance)
    if diff is None:
        probes = np.load(probes_file, allow_pickle=False)
        with threadpool_limits(limits=1):
            native_probes = native_estimator_outputs(native, probes)
        diff = first_difference("recheck_probes", native_probes, compiled.estimator_outputs(probes), tolerance)
    return f"load re-check failed: {diff.describe()}" if diff else None


def _plan(native: Any, entry: dict[str, Any]) -> tuple[Plan | None, str]:
    """The NumPy preprocessing plan when the proof recorded one (rebuilt from the loaded Pipeline), and
    what the ledger says: ``numpy``, ``pipeline`` or ``pipeline (...why)``."""
    recorded = (entry.get("preprocess") or {}).get("engine")
    if recorded != "numpy":
        return None, "pipeline" if recorded != "none" else "none"
    pre, _ = split_model(native)
    try:
        plan = recognise_preprocess(pre)
    except NotRecognised as exc:
        return None, f"pipeline (the proven plan is no longer recognised: {exc})"
    if plan.describe() != entry["preprocess"].get("steps"):
        return None, "pipeline (the recognised steps differ from the proven ones)"
    return plan, "numpy"


def predictor_for(store: ModelStore, mv: ModelVersion, engine: str = "auto",
                  workers: int = 1) -> tuple[Any, dict[str, Any]]:
    """The model to score ``mv`` with, and the engine details for the ledger.

    Args:
        store: the model store.
        mv: the version to score with.
        engine: native | compiled | auto. ``compiled`` and ``auto`` both use the compiled predictor only
            when proven and re-checked here; otherwise the native model scores (``fallback`` says why;
            ``compiled`` also logs a warning).
        workers: processes sharing this process's cores (sizes the threads, for either engine).

    Returns:
        (model, details): the native model or a ``CompiledModel``; details ``{"engine", "requested",
        "threads", ...}``.

    Raises:
        ModelStoreError: the native model cannot be loaded (as ``ModelStore.load``).
        ValueError: ``engine`` is not one of ENGINES.
    """
    if engine not in ENGINES:
        raise ValueError(f"scoring.engine {engine!r} is not one of {', '.join(ENGINES)}")
    threads = limit_threads(threads_per_worker(workers))
    native = store.load(mv)
    details: dict[str, Any] = {"requested": engine, "threads": threads}
    if engine == "native":
        return _native(native, details, None)
    entry = mv.meta.get("compiled") or {}
    status = entry.get("status")
    if status != "proven":
        why = {"refused": f"compiled predictor refused at compile: {entry.get('first_difference')}",
               "not_compiled": entry.get("reason"),
               "compiling": in_progress(entry) if status == "compiling" else ""}.get(
            status, "version not compiled (scoring models compile)")
        if engine == "compiled":
            logger.warning("%s v%s: compiled engine asked for, scoring natively: %s", mv.name, mv.version, why)
        return _native(native, details, why)
    current = _current(entry["compiler"])
    now = current.describe()
    changed = [k for k in current.version_keys if entry["compiler"].get(k) != now[k]]
    library = mv.path / entry.get("artifact", "?")
    modified = [name for name, sha in (entry.get("files_sha256") or {}).items()
                if not (library.parent / name).is_file() or sha256_file(library.parent / name) != sha
                ] if isinstance(mv.path, Path) else []
    if not isinstance(mv.path, Path):
        why = f"compiled artifacts are not fetched from an object store ({mv.path})"
    elif changed:
        why = "compiler changed since the proof: " + ", ".join(
            f"{k} {entry['compiler'].get(k)} -> {now[k]}" for k in changed)
    elif not library.is_file() or sha256_file(library) != entry.get("sha256") or modified:
        why = f"compiled artifact {(modified or [library.name])[0]} is missing or modified"
    else:
        try:
            plan, details["preprocess"] = _plan(native, entry)
            compiled = _compiled_model(native, current, library, threads, plan)
            why = _recheck(native, compiled, mv, entry)
        except Exception as exc:  # noqa: BLE001 - a library that fails to load or run falls back
            why = f"compiled predictor failed to load: {type(exc).__name__}: {exc}"[:300]
    if why:
        logger.warning("%s v%s: scoring natively: %s", mv.name, mv.version, why)
        return _native(native, details, why)
    details.update(engine="compiled", compiler=f"{now['name']} {now[now['name']]}",
                   artifact_sha256=entry["sha256"])
    logger.info("%s v%s: compiled engine, re-checked at load", mv.name, mv.version)
    return compiled, details


def load_predictor(store_root: Path, name: str, version: int, engine: str = "auto", workers: int = 1) -> Any:
    """``predictor_for``'s model only; module-level so ``functools.partial`` pickles into worker processes."""
    store = ModelStore(store_root)
    return predictor_for(store, store.get(name, version), engine, workers)[0]
