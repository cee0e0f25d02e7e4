"""The promotion gate: what a version must pass before it becomes the champion.

1. ``parity``: its registration passed the parity check (``metadata.parity.passed``);
2. ``schema``: the current source has every input of its signature, with compatible types;
3. ``champion``: on the evaluation window it is not worse than the champion on ``promotion.metric`` beyond
   ``promotion.tolerance`` (same rows, production scoring path: ``scoring.run.evaluate``);
4. ``shadow`` (when ``promotion.shadow_days`` > 0): the last that many days it was a challenger, it was
   shadow-scored in a successful run each time (read from the ledger's ``details.shadow``);
5. ``quarantine``: on the days it was shadow-scored, the share of rows it did not score (the champion's gate
   plus its own model errors) exceeds the champion's share on the same runs by at most
   ``promotion.max_quarantine_excess`` (a candidate compared on the rows it scored could otherwise pass and
   then quarantine a fifth of the first day after promotion).

``scoring models check`` runs them; ``scoring models promote`` refuses on any failure unless forced.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from scoring.config import Config
from scoring.dates import yesterday
from scoring.errors import ScoringError
from scoring.models.contract import contract_of
from scoring.models.store import ModelStore, ModelVersion
from scoring.quality.schema_check import plan_schema
from scoring.run.evaluate import DEFAULT_METRIC, Evaluation, evaluate_versions, metric_direction
from scoring.storage.results import open_results
from scoring.storage.results.reads import successful_runs_by_start
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


def shadow_days(cfg: Config, name: str, version: int) -> dict[dt.date, tuple[dict[str, Any], dict[str, Any]]]:
    """Per day the version was a challenger in the day's latest successful run: its ``details.shadow`` entry
    and the run's ledger row (``rows_in``, ``rows_rejected``: the champion's). Raises PublishError when the
    results cannot be read."""
    results = open_results(cfg.results)
    rows = successful_runs_by_start(results, name)
    latest: dict[dt.date, tuple[dict[str, Any], dict[str, Any]]] = {}
    for row in rows:  # the day's latest successful run decides
        details = row["details"] if isinstance(row["details"], dict) else json.loads(row["details"] or "{}")
        entry = (details.get("shadow") or {}).get(str(version))
        if entry is not None:
            latest[row["day"]] = (entry, row)
        else:
            latest.pop(row["day"], None)
    return latest


def _quarantine(cfg: Config, mv: ModelVersion, champion: ModelVersion | None) -> Check:
    if champion is None or champion.version == mv.version:
        return Check("quarantine", True, "no other champion to compare quarantine rates with")
    try:
        days = {d: v for d, v in shadow_days(cfg, mv.name, mv.version).items() if "rows_in" in v[0]}
    except ScoringError as exc:  # no results yet: no shadow day to hold against it (the shadow check may)
        return Check("quarantine", True, f"no shadow days to compare: {exc}")
    if not days:
        return Check("quarantine", True, "no shadow days with gate results to compare (not shadow-scored)")
    rows_in = sum(int(e["rows_in"]) for e, _ in days.values())
    ours = sum(int(e["quarantined"]) for e, _ in days.values())
    base_in = sum(int(r["rows_in"] or 0) for _, r in days.values())
    theirs = sum(int(r["rows_rejected"] or 0) for _, r in days.values())
    rate, base = ours / max(rows_in, 1), theirs / max(base_in, 1)
    rules: dict[str, int] = {}
    for entry, _ in days.values():
        for rule, n in (entry.get("rules") or {}).items():
            rules[rule] = rules.get(rule, 0) + int(n)
    top = ", ".join(f"{r} ({n})" for r, n in sorted(rules.items(), key=lambda kv: -kv[1])[:3])
    text = (f"quarantined {ours} of {rows_in} rows ({rate:.1%}) on {len(days)} shadow day(s) "
            f"{min(days)}..{max(days)} vs the {cfg.model.alias} v{champion.version}'s {base:.1%} on the same runs")
    limit = cfg.promotion.max_quarantine_excess
    if rate - base > limit:
        return Check("quarantine", False, f"{text}: more than promotion.max_quarantine_excess {limit:g} above it"
                     + (f"; rules: {top}" if top else ""))
    return Check("quarantine", True, text)


def _shadow(cfg: Config, mv: ModelVersion) -> Check:
    needed = cfg.promotion.shadow_days
    try:
        latest = {d: e for d, (e, _) in shadow_days(cfg, mv.name, mv.version).items()}
    except ScoringError as exc:
        return Check("shadow", False, f"no shadow runs to read: {exc}")
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
        The checks in order (parity, schema, champion, shadow when ``promotion.shadow_days`` > 0, quarantine).

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
    checks.append(_quarantine(cfg, mv, champion))
    for c in checks:
        logger.info("gate %s v%s: %s %s: %s", name, version, c.name, "passed" if c.passed else "FAILED", c.detail)
    return checks


class PromotionRefused(ScoringError):
    """The promotion gate refused a version: ``checks`` holds every check, the failed ones with their reason."""

    def __init__(self, name: str, version: int, alias: str, checks: list[Check]) -> None:
        self.checks = checks
        failed = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.passed)
        super().__init__(f"{alias} of {name} not moved to version {version}: the promotion gate refused it "
                         f"({failed}); force with a reason to override")


def promote(cfg: Config, name: str, version: int, alias: str | None = None, *, force: bool = False,
            reason: str | None = None, start: dt.date | None = None, end: dt.date | None = None,
            by: str | None = None) -> list[Check]:
    """Point ``alias`` (default ``model.alias``) of ``name`` at ``version`` through the promotion gate: the one
    path of ``models promote``, ``train``, ``models register --alias`` and Python callers.

    The gate runs only for the configured alias (other aliases move freely). ``force`` (needs ``reason``)
    moves it despite failed checks; the checks, who and why go into the alias history.

    Returns:
        The gate's checks (empty for an alias the gate does not guard).

    Raises:
        ScoringError: ``force`` without a ``reason``. PromotionRefused: a check failed and ``force`` is off
            (the alias is not moved). ModelStoreError: unknown model or version.
    """
    import getpass

    alias = alias or cfg.model.alias
    if force and not (reason or "").strip():
        raise ScoringError("--force needs --reason TEXT: why the gate is overridden (kept in the alias history)")
    note: dict[str, Any] = {"by": by or getpass.getuser()}
    checks: list[Check] = []
    if alias == cfg.model.alias:
        checks = gate_checks(cfg, name, version, start=start, end=end)
        if not force and not all(c.passed for c in checks):
            raise PromotionRefused(name, version, alias, checks)
        note["gate"] = {c.name: "passed" if c.passed else f"failed: {c.detail}" for c in checks}
    if force:
        note.update(forced=True, reason=(reason or "").strip())
    ModelStore(cfg.model.store).set_alias(name, alias, version, note=note)
    return checks
