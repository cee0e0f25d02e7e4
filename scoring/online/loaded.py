"""The model version in service: resolved from the store by alias (or pinned), with its gate and spec.

A ``Loaded`` is immutable and replaced whole: the service and the consumer read ``ModelSlot.current`` once
per micro-batch, so every row of a batch (and every row of a request) is scored by one version, and the
answer names it. ``ModelSlot.refresh`` follows the alias: when it points elsewhere the new version is loaded
(checksums and library versions verified by ``ModelStore.load``) and swapped in; a version that fails to
load is logged and the current one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from scoring.models.contract import contract_of
from scoring.models.scorer import ScoreSpec
from scoring.models.store import ModelStore, ModelVersion
from scoring.online.rows import ROW_COLUMN
from scoring.quality.compile import compile_suite
from scoring.quality.gate import Gate
from scoring.quality.suite import load_suite
from scoring.run.model_choice import choose_engine, load_scorer

if TYPE_CHECKING:
    from scoring.config import Config

logger = logging.getLogger(__name__)

# Rules that need the whole interval (duplicates of the day) cannot be checked on one row.
INTERVAL_RULES = {"expect_column_values_to_be_unique"}


@dataclass(frozen=True)
class Loaded:
    """One model version ready to score: the model object (for the engine ``choose_engine`` chose, as batch
    runs do), its contract spec, its per-row gate and the engine details (``load_scorer``)."""

    mv: ModelVersion
    model: Any
    spec: ScoreSpec
    gate: Gate
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def warn_gate(self) -> Gate:
        """The same rules, none quarantining (``--on-rule-failure warn``: rows are scored and flagged)."""
        return replace(self.gate, rules=tuple(replace(r, severity="warning") for r in self.gate.rules))

    @property
    def name(self) -> str:
        return self.mv.name

    @property
    def version(self) -> int:
        return self.mv.version

    @property
    def features(self) -> list[dict[str, str]]:
        return self.mv.features


def row_gate(cfg: Config, mv: ModelVersion) -> Gate:
    """The per-row rules of the version's suite (the file batch runs use, generated if missing).

    Only rules on the model's inputs apply: a request carries no timestamp, and a uniqueness rule needs the
    whole day's rows. Rows are typed by the signature before the gate, so no per-row cast is needed.

    Raises:
        SuiteError: the suite is required and missing, or unreadable.
    """
    path, suite, _ = load_suite(cfg.validation.suites_dir, mv, cfg.source.key_column,
                                margin=cfg.validation.range_margin, require=cfg.validation.require_suite)
    compiled = compile_suite(suite, path)
    inputs = {f["name"] for f in mv.features}
    rules = tuple(r for r in compiled.row_rules if r.column in inputs and r.type not in INTERVAL_RULES)
    return Gate(ROW_COLUMN, rules)


def load_version(cfg: Config, mv: ModelVersion, store: ModelStore) -> Loaded:
    """Load ``mv`` for the configured engine (``scoring.engine``, chosen by the batch runs' one rule) with its
    spec (threshold and probabilities from ``cfg``) and its per-row gate."""
    model, engine = load_scorer(store, mv, choose_engine(cfg, mv))
    spec = ScoreSpec(ROW_COLUMN, contract_of(mv.meta), cfg.model.threshold, probabilities=True)
    logger.info("%s v%s loaded for the %s engine", mv.name, mv.version, engine["engine"])
    return Loaded(mv, model, spec, row_gate(cfg, mv), engine)


class ModelSlot:
    """The version in service, swapped whole when the alias moves (never when a version is pinned)."""

    def __init__(self, cfg: Config, alias: str | None = None, version: int | None = None) -> None:
        self.cfg = cfg
        self.store = ModelStore(cfg.model.store)
        self.alias = alias or cfg.model.alias
        self.pinned = version if version is not None else cfg.model.version
        self._lock = threading.Lock()
        self._current: Loaded | None = None
        self.swaps = 0

    @property
    def current(self) -> Loaded | None:
        return self._current

    def _target(self) -> ModelVersion:
        return self.store.resolve(self.cfg.model.name, self.alias, self.pinned)

    def load(self) -> Loaded:
        """Resolve and load now (startup). Raises ModelStoreError / SuiteError naming the problem."""
        with self._lock:
            self._current = load_version(self.cfg, self._target(), self.store)
            logger.info("serving %s v%s", self._current.name, self._current.version)
            return self._current

    def refresh(self) -> bool:
        """Follow the alias: load and swap in the version it points at now. Returns whether it swapped."""
        if self.pinned is not None:
            return False
        with self._lock:
            try:
                target = self._target()
                if self._current is not None and target.version == self._current.version:
                    return False
                new = load_version(self.cfg, target, self.store)
            except Exception as exc:  # noqa: BLE001 - a bad promotion must not stop the service
                logger.error("cannot switch %s to alias %s: %s; still serving v%s", self.cfg.model.name,
                             self.alias, exc, self._current.version if self._current else None)
                return False
            old = self._current
            self._current = new
            self.swaps += 1
            logger.info("alias %s of %s moved: v%s -> v%s", self.alias, new.name,
                        old.version if old else None, new.version)
            return True
