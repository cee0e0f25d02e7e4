"""Which model version scores a day, and the rule that chose it (recorded in the ledger's run details).

Rules, in order: an explicit version (``--version``, the DAG param ``model_version``); the config's pin
(``model.version``); else the alias (``model.alias``), either its target now (``model_as_of="now"``, the
default) or its target on the business day itself (``"day"``: the version the alias pointed at when the day
ended, from the store's append-only alias history, so a backfill scores each day with that day's champion).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any, Literal

from scoring.config import Config
from scoring.dates import DataInterval
from scoring.errors import ConfigError, ModelStoreError
from scoring.models.store import ModelStore, ModelVersion

logger = logging.getLogger(__name__)

ModelAsOf = Literal["now", "day"]
MODEL_AS_OF: tuple[str, ...] = ("now", "day")


def check_model_as_of(cfg: Config, version: int | None, model_as_of: str) -> None:
    """Raise ConfigError (one line) for an unknown rule, or ``day`` combined with an explicit or pinned version."""
    if model_as_of not in MODEL_AS_OF:
        raise ConfigError(f"model_as_of must be one of {', '.join(MODEL_AS_OF)}, not {model_as_of!r}")
    if model_as_of == "day" and (version is not None or cfg.model.version is not None):
        pinned = f"--version {version}" if version is not None else f"model.version: {cfg.model.version}"
        raise ConfigError(f"model_as_of 'day' follows the alias history of {cfg.model.alias!r}, but {pinned} "
                          "pins a version; drop one of them")


def choose_model(cfg: Config, interval: DataInterval | None, version: int | None = None,
                 model_as_of: str = "now", *, models: ModelStore | None = None) -> tuple[ModelVersion, dict[str, Any]]:
    """The version to score ``interval`` with, and ledger details naming the rule that chose it: the one
    model-choice rule of runs, plans, backfills (once, at their start) and jobs.

    Args:
        cfg: the loaded configuration (``model`` section; a job passes a copy naming its model and alias).
        interval: the business day scored (``day`` uses its end); None for a job's input (``now`` only).
        version: an explicit version (wins over everything but cannot be combined with ``day``).
        model_as_of: ``now`` (the alias's target at run time) or ``day`` (its target on that business day).
        models: the open model store (default: ``cfg.model.store``, opened here).

    Returns:
        The model version and ``{"model_rule": ..., ...}``: ``explicit-version``, ``config-pin``,
        ``alias-now`` or ``alias-on-day`` (with ``model_alias`` and, for the last, ``model_as_of_time``).

    Raises:
        ConfigError: an unknown ``model_as_of``, or ``day`` with an explicit or pinned version.
        ModelStoreError: unknown model or version, or the alias did not exist yet on that day.
    """
    check_model_as_of(cfg, version, model_as_of)
    store = models if models is not None else ModelStore(cfg.model.store)
    name, alias = cfg.model.name, cfg.model.alias
    if model_as_of == "day":
        if interval is None:
            raise ConfigError("model_as_of 'day' needs a business day; a job's input has none")
        # The champion of day D is the version the alias pointed at when D ended (a promotion during D counts).
        when = interval.end - dt.timedelta(microseconds=1)
        target = store.alias_at(name, alias, when)
        if target is None:
            store.versions(name)  # raises for an unknown model
            raise ModelStoreError(f"alias {alias!r} of model {name!r} did not exist yet on {interval.day} "
                                  f"({interval.zone}); score that day with --model-as-of now or --version")
        rule = {"model_rule": "alias-on-day", "model_alias": alias, "model_as_of_time": when.isoformat()}
        return store.get(name, target), rule
    if version is not None:
        return store.get(name, version), {"model_rule": "explicit-version"}
    if cfg.model.version is not None:
        return store.get(name, cfg.model.version), {"model_rule": "config-pin"}
    return store.resolve(name, alias), {"model_rule": "alias-now", "model_alias": alias}


def choose_engine(cfg: Config, mv: ModelVersion) -> dict[str, Any]:
    """The engine that scores ``mv``: the one engine-choice rule of every entry point (runs, plans, jobs, the
    online service), made from the version's metadata without loading it, and recorded in the plan and the
    ledger's ``details.engine``.

    Args:
        cfg: the loaded configuration (``scoring.engine``: native | compiled | auto).
        mv: the model version chosen by ``choose_model``.

    Returns:
        ``{"requested", "engine"}`` (``engine`` native | compiled), with ``fallback`` (one line) when compiled
        was asked for but the version has no proven compiled predictor. Where the model is loaded,
        ``load_scorer`` re-checks a compiled predictor and may still fall back (its details say why).
    """
    requested = cfg.scoring.engine
    if requested == "native":
        return {"requested": requested, "engine": "native"}
    entry = mv.meta.get("compiled") or {}
    if entry.get("status") == "proven":
        return {"requested": requested, "engine": "compiled"}
    why = {"refused": f"compiled predictor refused at compile: {entry.get('first_difference')}",
           "not_compiled": entry.get("reason")}.get(entry.get("status"),
                                                     "version not compiled (scoring models compile)")
    return {"requested": requested, "engine": "native", "fallback": why}


def load_scorer(store: ModelStore, mv: ModelVersion, engine: dict[str, Any],
                workers: int = 1) -> tuple[Any, dict[str, Any]]:
    """Load ``mv`` for the engine ``choose_engine`` chose (``predictor_for``: a compiled predictor is re-checked
    bit for bit in this process and falls back to native when it differs).

    Returns:
        (model, details): details for the ledger's ``details.engine``: the choice's ``requested`` and
        ``fallback``, and the loaded ``engine``, ``threads`` (and the compiler and artifact when compiled).

    Raises:
        ModelStoreError: the model cannot be loaded.
    """
    from scoring.models.compiled import predictor_for

    model, details = predictor_for(store, mv, engine.get("engine", "native"), workers)
    return model, {**details, **{k: v for k, v in engine.items() if k != "engine"}}


def loaded_engine(store_root: Path, name: str, version: int, engine: dict[str, Any], workers: int = 1) -> Any:
    """``load_scorer``'s model only; module-level so ``functools.partial`` pickles into worker processes."""
    store = ModelStore(store_root)
    return load_scorer(store, store.get(name, version), engine, workers)[0]
