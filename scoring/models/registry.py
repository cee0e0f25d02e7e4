"""Register a fitted model (any scikit-learn-compatible estimator saved with joblib) into the store.

Registration declares the model's contract (``scoring.models.contract``): the task, the classes and the
positive class, and the inputs in the order the model consumes them with the dtypes it was trained on.
It then runs the parity check (``scoring.models.parity``): a registration whose production path does not
reproduce the model's own output is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.errors import ModelStoreError
from scoring.models.contract import TASKS, Contract, choose_positive, json_value
from scoring.models.introspect import final_estimator, infer_inputs
from scoring.models.metrics import task_metrics
from scoring.models.parity import SAMPLE_ROWS, parity_check
from scoring.models.reference import build_reference, drift_baseline
from scoring.models.scorer import encoded_width, raw_outputs
from scoring.models.signature import features_from_frame
from scoring.models.store import ModelStore, ModelVersion

logger = logging.getLogger(__name__)


def infer_task(model: Any, given: str | None, name: str) -> str:
    """binary or multiclass for a classifier with ``predict_proba`` and ``classes_``, else regression.

    Raises:
        ModelStoreError: ``given`` is not a task, or contradicts what the model can do.
    """
    classes = getattr(model, "classes_", None)
    can_proba = hasattr(model, "predict_proba") and classes is not None
    inferred = ("binary" if len(classes) == 2 else "multiclass") if can_proba else "regression"
    if given is None:
        if not can_proba and not hasattr(model, "predict"):
            raise ModelStoreError(f"model {name}: {type(model).__name__} has neither predict_proba nor predict")
        return inferred
    if given not in TASKS:
        raise ModelStoreError(f"model {name}: --task {given!r} is not one of {', '.join(TASKS)}")
    if given in ("binary", "multiclass") and not can_proba:
        raise ModelStoreError(f"model {name}: --task {given} needs a classifier with predict_proba and "
                              f"classes_; {type(model).__name__} has not")
    if given != inferred and given != "regression":
        raise ModelStoreError(f"model {name}: --task {given}, but the model has {len(classes)} classes")
    return given


def input_names(model: Any, frame: pd.DataFrame, declared: Sequence[str] | None, name: str) -> list[str]:
    """The model's inputs in the order it consumes them.

    ``feature_names_in_`` when the model has them (``declared`` must then agree); else ``declared`` is
    required and its length must match ``n_features_in_``: the column order of a training file is never
    taken as the model's input order.

    Raises:
        ModelStoreError: (one line) missing or inconsistent declaration, or inputs absent from the data.
    """
    fitted = getattr(model, "feature_names_in_", None)
    count = getattr(model, "n_features_in_", None)
    if fitted is not None:
        names = [str(n) for n in fitted]
        if declared and list(declared) != names:
            raise ModelStoreError(f"model {name}: --features {','.join(declared)} differs from the names the model "
                                  f"was fitted with ({','.join(names)}); drop --features or fix it")
    elif declared:
        names = list(declared)
        if count is not None and len(names) != int(count):
            raise ModelStoreError(f"model {name}: --features names {len(names)} columns, the model was fitted on "
                                  f"{int(count)}")
    else:
        raise ModelStoreError(f"model {name}: {type(final_estimator(model)).__name__} was fitted without column "
                              f"names ({count if count is not None else 'unknown number of'} inputs): pass "
                              "--features a,b,c in the order the model was fitted")
    if len(set(names)) != len(names):
        raise ModelStoreError(f"model {name}: input names repeat: {','.join(names)}")
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ModelStoreError(f"model {name}: the training data lacks the model's input columns "
                              f"{', '.join(map(repr, missing[:8]))}")
    return names


def build_contract(model: Any, frame: pd.DataFrame, name: str, *, task: str | None = None,
                   positive_class: str | None = None, features: Sequence[str] | None = None) -> Contract:
    """Infer the contract of ``model`` from itself and its training ``frame``, with the user's declarations.

    Raises:
        ModelStoreError: (one line) anything that must be declared and was not, or contradicts the model.
    """
    kind = infer_task(model, task, name)
    names = input_names(model, frame, features, name)
    classes = tuple(json_value(c) for c in getattr(model, "classes_", ())) if kind != "regression" else ()
    positive = choose_positive(list(classes), positive_class, name) if kind == "binary" else None
    if kind != "binary" and positive_class is not None:
        raise ModelStoreError(f"model {name}: --positive-class applies to binary classifiers; this is {kind}")
    fitted_names = getattr(model, "feature_names_in_", None) is not None
    return Contract(kind, infer_inputs(model, frame, names), classes, positive, fitted_names)


def _labels(frame: pd.DataFrame, label_column: str | None, name: str) -> pd.Series | None:
    if label_column is None:
        return None
    if label_column not in frame.columns:
        raise ModelStoreError(f"model {name}: label column {label_column!r} is not in the training data "
                              f"(columns: {', '.join(map(str, list(frame.columns)[:12]))})")
    return frame[label_column]


def register_model(store: ModelStore, name: str, artifact: Path, reference_frame: pd.DataFrame, *,
                   label_column: str | None = None, exclude: set[str] = frozenset(),
                   window: tuple[dt.date, dt.date] | None = None, metrics: dict[str, float] | None = None,
                   aliases: Sequence[str] = (), extra: dict[str, Any] | None = None, task: str | None = None,
                   positive_class: str | None = None, features: Sequence[str] | None = None,
                   code: Sequence[Path] = (), parity_rows: int = SAMPLE_ROWS, days: pd.Series | None = None,
                   drift_window: int = 1, on_step: Callable[[str], None] | None = None) -> ModelVersion:
    """Register ``artifact`` with its contract, parity check, feature schema and drift reference.

    Args:
        store: the model store.
        name: model name.
        artifact: joblib file of a fitted estimator or Pipeline (classifier or regressor).
        reference_frame: rows the model was trained on (or a sample): dtypes, parity check, drift reference.
        label_column: label in ``reference_frame``, for metrics when none are given (unlabelled rows skipped).
        exclude: non-feature columns (key, timestamp) — only used to keep them out of the metadata.
        window: the training data window.
        metrics: metrics computed by the trainer; computed on ``reference_frame`` if None and labels exist.
        aliases: aliases to point at the new version (e.g. ``champion``).
        extra: more metadata to keep.
        task: binary | multiclass | regression (default: inferred).
        positive_class: binary: the class whose probability is the score (required unless 0/1, False/True).
        features: the inputs in fit order, for models fitted without column names.
        code: the user's own modules or packages the pickle needs (copied into the version and hashed).
        parity_rows: sample size of the parity check.
        days: the business day of each row of ``reference_frame``: the drift baseline (PSI of each training
            day against the reference) is computed from them; none without.
        drift_window: business days pooled per drift window (``validation.drift.window_days``).
        on_step: called with the name of each long step as it starts (the CLI shows it as progress);
            default: logged at INFO.

    Raises:
        ModelStoreError: (one line) the artifact cannot be loaded, a declaration is missing or wrong, the
            labels do not fit the model, or the parity check fails. Nothing is registered then.
    """
    if not artifact.is_file():
        raise ModelStoreError(f"artifact {str(artifact)!r} not found")
    step = on_step or (lambda what: logger.info("registering %s: %s", name, what))
    step("loading the artifact and inferring its contract")
    model = _load_artifact(artifact, code)
    contract = build_contract(model, reference_frame, name, task=task, positive_class=positive_class,
                              features=features)
    labels = _labels(reference_frame, label_column, name)
    step(f"parity check on {min(parity_rows, len(reference_frame)):,} rows through the production path")
    parity = parity_check(model, reference_frame, contract, name, rows=parity_rows)
    step(f"metrics and outputs on {len(reference_frame):,} training rows")
    columns = contract.names
    given = reference_frame[columns] if contract.feature_names else reference_frame[
        [c for c in reference_frame.columns if c in set(columns)]]
    outputs = raw_outputs(model, given, contract)
    computed = task_metrics(contract, outputs, labels, label_column or "label")
    schema = features_from_frame(reference_frame, columns)
    meta = {
        "features": schema,
        "signature": contract.to_json(),
        "parity": parity,
        "estimator": type(final_estimator(model)).__name__,
        "encoded_width": encoded_width(model, len(columns)),  # chunk sizing at plan time, without unpickling
        "classes": [str(c) for c in contract.classes],
        "training_window": {"start": str(window[0]), "end": str(window[1])} if window else None,
        "metrics": metrics if metrics is not None else computed,
        "reference": None,
        **(extra or {}),
    }
    step("reference statistics (drift)")
    meta["reference"] = build_reference(reference_frame, schema, _score_of(contract, outputs), contract.task)
    if days is not None:
        step("drift baseline per training day")
        meta["reference"]["baseline"] = drift_baseline(reference_frame, days, meta["reference"], schema,
                                                       _score_of(contract, outputs), drift_window)
    if metrics is not None and labels is not None:
        meta["training_metrics"] = computed
    step("writing the version")
    return store.register(name, artifact, meta, aliases=list(aliases), **({"code": list(code)} if code else {}))


def _score_of(contract: Contract, outputs: np.ndarray) -> np.ndarray:
    """The value a run publishes as ``score`` for each row (for the score's drift reference)."""
    if contract.task == "regression":
        return outputs
    if contract.task == "binary":
        return outputs[:, contract.positive_index]
    return outputs.max(axis=1)


def _load_artifact(artifact: Path, code: Sequence[Path]) -> Any:
    import joblib

    try:
        if code:
            from scoring.models.code import code_on_path

            with code_on_path(list(code)):
                return joblib.load(artifact)
        return joblib.load(artifact)
    except ModelStoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling runs user code: one line whatever it raises
        hint = " (a module of your own? pass it with --code)" if isinstance(exc, ModuleNotFoundError | AttributeError) else ""
        raise ModelStoreError(f"cannot load artifact {str(artifact)!r}: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}{hint}") from None
