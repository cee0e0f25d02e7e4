"""Register a fitted model (any scikit-learn-compatible estimator saved with joblib) into the store.

Registration declares the model's contract (``scoring.models.contract``): the task, the classes and the
positive class, and the inputs in the order the model consumes them with the dtypes it was trained on.
It then runs the parity check (``scoring.models.parity``): a registration whose production path does not
reproduce the model's own output is refused.
"""

from __future__ import annotations

import dataclasses
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
from scoring.models.metrics import chance_level, task_metrics
from scoring.models.parity import SAMPLE_ROWS, parity_check
from scoring.models.performance_ref import performance_reference, sample_chunks
from scoring.models.reference import MIN_WINDOW_ROWS, build_reference, drift_baseline
from scoring.models.scorer import FRAME_INPUT, encoded_width, needs_frame, raw_outputs
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
                   drift_window: int = 1, chunk_rows: int | None = None, threshold: float = 0.5,
                   accept_metrics: bool = False, trust: bool = False,
                   on_step: Callable[[str], None] | None = None, promoted_alias: str = "champion",
                   force: bool = False, reason: str | None = None) -> ModelVersion:
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
        aliases: aliases to point at the new version (e.g. ``challenger``). The promoted alias
            (``promoted_alias``) moves only through the promotion gate: registering refuses it while it points
            at a version, unless ``force`` with a ``reason`` (kept in the alias history, as ``models promote
            --force --reason``); gate it with ``scoring.run.promotion.promote`` after registering instead. Its
            first assignment (no version holds it yet, nothing to compare with) is allowed and noted.
        extra: more metadata to keep.
        task: binary | multiclass | regression (default: inferred).
        positive_class: binary: the class whose probability is the score (required unless 0/1, False/True).
        features: the inputs in fit order, for models fitted without column names.
        code: the user's own modules or packages the pickle needs (copied into the version and hashed).
        parity_rows: sample size of the parity check.
        days: the business day of each row of ``reference_frame``: the drift baseline (PSI of each training
            day against the reference) is computed from them; none without.
        drift_window: business days pooled per drift window (``validation.drift.window_days``).
        chunk_rows: without ``days`` (no timestamp in the training rows): the typical day's row count; the
            drift baseline and the performance bands are then calibrated on chunks of that many rows drawn
            at random from the training rows (``sample_chunks``). ``meta["reference"]["basis"]`` says which.
        threshold: the binary decision threshold (accuracy bands, CBPE).
        accept_metrics: register even when the labelled rows give chance-level metrics (``chance_level``).
        trust: accept imports outside the allow-list (``scoring.models.trust``); they are recorded in the
            metadata as ``trusted_imports`` and accepted again at load time.
        on_step: called with the name of each long step as it starts (the CLI shows it as progress);
            default: logged at INFO.
        promoted_alias: the alias the promotion gate guards (the configuration's ``model.alias``).
        force, reason: move the promoted alias past the gate; ``reason`` is required with ``force``.

    Raises:
        ModelStoreError: (one line) the artifact cannot be loaded, a declaration is missing or wrong, the
            labels do not fit the model, a model without column names has no labels, the metrics are at
            chance level (unless ``accept_metrics``), or the parity check fails; ``aliases`` would move the
            promoted alias past the gate (see ``aliases``). Nothing is registered then.
    """
    if not artifact.is_file():
        raise ModelStoreError(f"artifact {str(artifact)!r} not found")
    alias_note = _promoted_alias_note(store, name, aliases, promoted_alias, force, reason)
    step = on_step or (lambda what: logger.info("registering %s: %s", name, what))
    step("loading the artifact and inferring its contract")
    model, trusted = _load_artifact(artifact, code, trust)
    _check_code(model, code, name)
    contract = build_contract(model, reference_frame, name, task=task, positive_class=positive_class,
                              features=features)
    labels = _labels(reference_frame, label_column, name)
    if not contract.feature_names and labels is None:
        raise ModelStoreError(f"model {name}: a model fitted without column names needs --label: the labelled "
                              "training rows are the only check that --features is the order it was fitted in")
    if needs_frame(model, reference_frame[contract.names].head(50), contract):
        contract = dataclasses.replace(contract, extra={**contract.extra, "input": FRAME_INPUT})
    step(f"parity check on {min(parity_rows, len(reference_frame)):,} rows through the production path")
    parity = parity_check(model, reference_frame, contract, name, rows=parity_rows)
    step(f"metrics and outputs on {len(reference_frame):,} training rows")
    columns = contract.names
    outputs = raw_outputs(model, reference_frame[columns], contract)
    computed = task_metrics(contract, outputs, labels, label_column or "label")
    chance = chance_level(contract, computed, labels)
    if chance is not None and not accept_metrics:
        raise ModelStoreError(f"model {name}: {chance}: the inputs are probably misordered (--features) or the "
                              "labels wrong (--label); fix them, or pass --accept-metrics to register it anyway")
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
    chunks, basis = reference_chunks(len(reference_frame), days, chunk_rows)
    if chunks is not None:
        step("drift baseline per training day" if days is not None else "drift baseline on typical-day chunks")
        meta["reference"]["baseline"] = drift_baseline(reference_frame.reset_index(drop=True), chunks,
                                                       meta["reference"], schema, _score_of(contract, outputs),
                                                       drift_window)
        if meta["reference"]["baseline"] is None:
            basis = f"fixed thresholds: too few reference chunks of {MIN_WINDOW_ROWS}+ rows ({basis})"
    meta["reference"]["basis"] = basis
    step("performance reference")
    meta["performance"] = performance_reference(contract, outputs, labels.reset_index(drop=True)
                                                if labels is not None else None, chunks, basis, threshold)
    if metrics is not None and labels is not None:
        meta["training_metrics"] = computed
    if trusted:
        meta["trusted_imports"] = trusted
    step("writing the version")
    mv = store.register(name, artifact, meta, aliases=[a for a in aliases if a != promoted_alias],
                        **({"code": list(code)} if code else {}))
    if alias_note is not None:
        store.set_alias(name, promoted_alias, mv.version, note=alias_note)
    return mv


def _promoted_alias_note(store: ModelStore, name: str, aliases: Sequence[str], promoted: str, force: bool,
                         reason: str | None) -> dict[str, Any] | None:
    """The alias-history note of a registration that points the promoted alias at the new version (None: it
    does not), or ModelStoreError (one line) when that would move it past the promotion gate."""
    import getpass

    if force and not (reason or "").strip():
        raise ModelStoreError(f"model {name}: force=True needs reason='...': why the promotion gate is overridden "
                              "(kept in the alias history)")
    if promoted not in aliases:
        if force:
            raise ModelStoreError(f"model {name}: force applies to moving the {promoted} alias, which "
                                  f"aliases={list(aliases)} does not name")
        return None
    current = store.aliases(name).get(promoted)  # {} for a model's first version
    if force:
        return {"by": getpass.getuser(), "forced": True, "reason": (reason or "").strip(),
                "gate": "not run: registered with force"}
    if current is not None:
        raise ModelStoreError(f"model {name}: aliases={list(aliases)} would move {promoted} from version {current} "
                              "past the promotion gate: register without it, then promote through the gate "
                              f"(scoring.run.promotion.promote, or `scoring models promote`); force=True with "
                              "reason='...' overrides it")
    return {"by": getpass.getuser(), "gate": f"first {promoted} of {name}: no version to compare with"}


def reference_chunks(n: int, days: pd.Series | None, chunk_rows: int | None) -> tuple[pd.Series | None, str]:
    """The reference chunk of each training row and the one-line basis registration reports: business days
    when the rows carry a timestamp, else chunks of ``chunk_rows`` drawn from the rows, else none."""
    if days is not None:
        days = pd.Series(list(days), dtype=object)
        return days, f"calibrated on {days.nunique()} training days"
    if chunk_rows:
        size = max(int(chunk_rows), MIN_WINDOW_ROWS)
        return sample_chunks(n, size), (f"calibrated on {n // size} chunks of {size} rows (a typical day) drawn "
                                        "at random from the training rows: they carry no timestamp")
    return None, "fixed thresholds: the training rows carry no timestamp and no typical day size was given"


def _score_of(contract: Contract, outputs: np.ndarray) -> np.ndarray:
    """The value a run publishes as ``score`` for each row (for the score's drift reference)."""
    if contract.task == "regression":
        return outputs
    if contract.task == "binary":
        return outputs[:, contract.positive_index]
    return outputs.max(axis=1)


def _check_code(model: Any, code: Sequence[Path], name: str) -> None:
    """Refuse a model whose objects come from a module outside the installed packages that was not passed
    with ``--code`` (importable from ``PYTHONPATH`` or the working folder today, edited tomorrow)."""
    from scoring.models.code import _module_name, modules_outside

    outside = modules_outside(model, [_module_name(Path(p).expanduser().resolve()) for p in code])
    if outside:
        module, file = next(iter(outside.items()))
        raise ModelStoreError(f"model {name}: it uses module {module!r} ({file}), which is not part of an installed "
                              f"package: pass it with --code {file if file != '?' else module + '.py'} so the "
                              "version keeps its own copy")


def _load_artifact(artifact: Path, code: Sequence[Path], trust: bool = False) -> tuple[Any, list[str]]:
    """The model, loaded with every import checked (``trust.restricted_load``), and the imports accepted
    with ``trust`` (none without)."""
    from scoring.models.code import check_sources
    from scoring.models.trust import UntrustedImport, list_untrusted, restricted_load

    modules = [name for name, _ in check_sources(code)] if code else []
    try:
        if code:
            from scoring.models.code import code_on_path

            with code_on_path(list(code)):
                trusted = list_untrusted(artifact, modules) if trust else []
                return restricted_load(artifact, modules, trusted), trusted
        trusted = list_untrusted(artifact, modules) if trust else []
        return restricted_load(artifact, modules, trusted), trusted
    except UntrustedImport as exc:
        raise ModelStoreError(f"cannot register {str(artifact)!r}: {exc}; an artifact is code: if you trust its "
                              "author, pass --trust (or --code for a module of your own)") from None
    except ModelStoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling runs user code: one line whatever it raises
        hint = " (a module of your own? pass it with --code)" if isinstance(exc, ModuleNotFoundError | AttributeError) else ""
        raise ModelStoreError(f"cannot load artifact {str(artifact)!r}: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}{hint}") from None
