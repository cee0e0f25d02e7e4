"""The promotion gate: what a version must pass before it becomes the champion.

1. ``parity``: its registration passed the parity check (``metadata.parity.passed``);
2. ``schema``: the current source has every input of its signature, with compatible types;
3. ``champion``: on the evaluation window it is not worse than the champion on ``promotion.metric`` beyond
   ``promotion.tolerance`` (same rows, production scoring path: ``scoring.run.evaluate``);
4. ``shadow`` (when ``promotion.shadow_days`` > 0): the last that many days it was a challenger, it was
   shadow-scored in a successful run each time (read from the ledger's ``details.shadow``).

``scoring models check`` runs them; ``scoring models promote`` refuses on any failure unless forced.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from scoring.config import Config
from scoring.dates import yesterday
from scoring.errors import ScoringError
from scoring.models.contract import contract_of
from scoring.models.store import ModelStore, ModelVersion
from scoring.quality.schema_check import plan_schema
from scoring.run.evaluate import DEFAULT_METRIC, Evaluation, evaluate_versions, metric_direction
from scoring.storage.results import open_results
from scoring.storage.sources import open_source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """One gate check: its name, whether it passed and a one-line account."""

    name: str
    passed: bool
    detail: str


def evaluation_window(cfg: Config, start: dt.date | None = None, end: dt.date | None = None
                      ) -> tuple[dt.date, dt.date]:
    """``start``/``end`` when given, else the last ``promotion.window_days`` business days before today."""
    end = end or yesterday(cfg.timezone)
    return start or end - dt.timedelta(days=cfg.promotion.window_days - 1), end


def _parity(mv: ModelVersion) -> Check:
    parity = mv.meta.get("parity")
    if isinstance(parity, dict) and parity.get("passed") is True:
        return Check("parity", True, f"passed on {parity.get('rows')} rows, max |diff| "
                     f"{float(parity.get('max_abs_diff', 0.0)):.1e}")
    why = "no parity check recorded (registered before it existed)" if parity is None else \
        f"parity check did not pass ({parity.get('error', 'passed is not true') if isinstance(parity, dict) else parity})"
    return Check("parity", False, why)


def _schema(cfg: Config, mv: ModelVersion) -> Check:
    try:
        with open_source(cfg.source) as source:
            plan = plan_schema(source.schema(), mv.features, cfg.source.key_column,
                               policy=cfg.validation.schema_drift, timestamp_column=cfg.source.timestamp_column)
    except ScoringError as exc:
        return Check("schema", False, str(exc))
    return Check("schema", True, f"the source has its {len(plan.columns) - 1} inputs")


def _champion(cfg: Config, mv: ModelVersion, champion: ModelVersion | None, window: tuple[dt.date, dt.date]
              ) -> tuple[Check, Evaluation | None]:
    if champion is None:
        return Check("champion", True, f"no {cfg.model.alias} yet to compare with"), None
    if champion.version == mv.version:
        return Check("champion", True, f"version {mv.version} is the {cfg.model.alias}"), None
    metric = cfg.promotion.metric or DEFAULT_METRIC[contract_of(mv.meta).task]
    try:
        direction = metric_direction(metric)
        result = evaluate_versions(cfg, [mv, champion], *window)
    except ScoringError as exc:
        return Check("champion", False, f"cannot evaluate on {window[0]}..{window[1]}: {exc}"), None
    ours, theirs = result.metrics[mv.version].get(metric), result.metrics[champion.version].get(metric)
    where = f"on {window[0]}..{window[1]} ({result.rows} labelled rows)"
    if ours is None or theirs is None:
        return Check("champion", False, f"{metric} is undefined {where}"), result
    worse_by = (theirs - ours) * direction
    text = (f"{metric} {ours:.4f} vs {cfg.model.alias} v{champion.version} {theirs:.4f} {where}; "
            f"tolerance {cfg.promotion.tolerance:g}")
    if worse_by > cfg.promotion.tolerance:
        return Check("champion", False, f"worse than the {cfg.model.alias} by {worse_by:.4f}: {text}"), result
    return Check("champion", True, text), result


def _shadow(cfg: Config, mv: ModelVersion) -> Check:
    needed = cfg.promotion.shadow_days
    try:
        results = open_results(cfg.results)
        rows = results.successful_runs(mv.name)
    except ScoringError as exc:
        return Check("shadow", False, f"no shadow runs to read: {exc}")
    latest: dict[dt.date, dict[str, object]] = {}
    for row in rows:  # the day's latest successful run decides
        entry = (json.loads(row["details"] or "{}").get("shadow") or {}).get(str(mv.version))
        if entry is not None:
            latest[row["day"]] = entry
        else:
            latest.pop(row["day"], None)
    days = sorted(latest)[-needed:]
    failed = [d.isoformat() for d in days if latest[d].get("status") != "scored"]
    if failed:
        return Check("shadow", False, f"shadow scoring failed on {', '.join(failed)}: "
                     f"{latest[dt.date.fromisoformat(failed[-1])].get('error')}")
    if len(days) < needed:
        return Check("shadow", False, f"shadow-scored on {len(days)} day(s), promotion.shadow_days needs {needed}")
    return Check("shadow", True, f"shadow-scored without failure on {days[0]}..{days[-1]}")


def gate_checks(cfg: Config, name: str, version: int, *, start: dt.date | None = None,
                end: dt.date | None = None, record: bool = True) -> list[Check]:
    """Run every check of the promotion gate for ``name`` version ``version``.

    Args:
        cfg: the configuration (``promotion``, source, results, model store and alias).
        name, version: the candidate.
        start, end: the evaluation window (default: ``evaluation_window``).
        record: append the evaluation to the model's evaluations log.

    Returns:
        The checks in order (parity, schema, champion, then shadow when ``promotion.shadow_days`` > 0).

    Raises:
        ModelStoreError: unknown model or version.
    """
    store = ModelStore(cfg.model.store)
    mv = store.get(name, version)
    target = store.aliases(name).get(cfg.model.alias)
    champion = store.get(name, target) if target is not None else None
    checks = [_parity(mv), _schema(cfg, mv)]
    check, evaluation = _champion(cfg, mv, champion, evaluation_window(cfg, start, end))
    checks.append(check)
    if evaluation is not None and record:
        for v in evaluation.metrics:
            store.add_evaluation(name, evaluation.record(v))
    if cfg.promotion.shadow_days > 0:
        checks.append(_shadow(cfg, mv))
    for c in checks:
        logger.info("gate %s v%s: %s %s: %s", name, version, c.name, "passed" if c.passed else "FAILED", c.detail)
    return checks
