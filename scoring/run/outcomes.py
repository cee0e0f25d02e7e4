"""``scoring outcomes``: join the labels that arrived to the predictions published for each scoring day of a
window, per model version (the champion's predictions and every challenger's shadow predictions), and replace
the window's ``outcomes`` and ``label_coverage`` rows in one transaction (a rerun with the same labels writes
the same rows; more labels, recomputed rows). See docs/outcomes.md.

Memory: the labels observed since the window's first day (three columns), one day's predictions of one
table at a time, and the (key, day) pairs published or quarantined in the window and ``max_delay_days``
before it (to tell a label of a key never scored from one scored earlier).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from scoring.config import Config
from scoring.dates import day_range
from scoring.errors import ConfigError, ModelStoreError, ScoringError
from scoring.models.contract import Contract, contract_of
from scoring.models.outcomes import count_quarantined, day_outcome, metrics_json
from scoring.models.store import ModelStore
from scoring.quality.performance import judge_day
from scoring.storage.labels import read_labels
from scoring.storage.results import ResultsStore, open_results
from scoring.storage.results.reads import day_published, published_keys, quarantined_keys
from scoring.storage.results.tables import LABEL_COVERAGE, OUTCOMES, RUNS

logger = logging.getLogger(__name__)


@dataclass
class OutcomesResult:
    """What ``compute_outcomes`` wrote: the ``outcomes`` and ``label_coverage`` rows, and labels read."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    labels_read: int = 0
    labels_without_day: int = 0
    ledger: list[dict[str, Any]] = field(default_factory=list)  # the run-ledger rows of warning/alert days


LEDGER_TRIGGER = "outcomes"


def _ledger_row(row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The run-ledger row of a (day, version) whose realized or estimated metric left its reference band:
    status ``warning`` or ``alert``, trigger ``outcomes``, the alerts as its one-line ``error`` (``scoring
    runs`` lists it under the table) and in ``details``. Its id is fixed by (model, day, version, role), so a
    recomputation replaces it, and a day back in its band loses it."""
    import os
    import socket

    alerts = json.loads(row["alerts"]) if row["alerts"] else []
    text = "; ".join(f"{a['kind']} {a['metric']} {a['value']:.4f} outside its {a['status']} band "
                     f"[{a['band'][0]:.4f}, {a['band'][1]:.4f}]" for a in alerts)
    role = "" if row["role"] == "champion" else f" ({row['role']})"
    return {"run_id": f"outcomes:{row['model_name']}:{row['day']}:v{row['model_version']}:{row['role']}",
            "day": row["day"], "model_name": row["model_name"], "model_version": row["model_version"],
            "status": row["status"], "started_at": now, "finished_at": now, "duration_s": 0.0,
            "error": f"outcomes{role}: {text} ({row['labelled']} labelled of {row['rows_scored']} scored)",
            "trigger": LEDGER_TRIGGER,
            "details": json.dumps({"outcomes": {k: row[k] for k in ("role", "labelled", "coverage")} |
                                   {"alerts": alerts}}, default=str),
            "host": socket.gethostname(), "pid": os.getpid()}


def _coverage(labels: pd.DataFrame, published: pd.DataFrame, quarantined: pd.DataFrame, model: str,
              start: dt.date, end: dt.date, delay: int, now: dt.datetime) -> list[dict[str, Any]]:
    """Per observed day of the window: labels, joined (a prediction of the key on a day it may belong to),
    quarantined (only a quarantine row of the key), unscored (neither)."""
    rows = []
    have = labels[labels["observed_day"].map(lambda d: d is not None and start <= d <= end)]
    scored = published.groupby("source_key")["day"].apply(list).to_dict() if len(published) else {}
    held = quarantined.groupby("source_key")["day"].apply(list).to_dict() if len(quarantined) else {}

    def within(days: list[dt.date] | None, observed: dt.date) -> bool:
        return any(observed - dt.timedelta(days=delay) <= d <= observed for d in days or ())

    for observed, group in have.groupby("observed_day"):
        joined = quarantine_only = 0
        for key in group["key"]:
            if within(scored.get(key), observed):
                joined += 1
            elif within(held.get(key), observed):
                quarantine_only += 1
        rows.append({"day": observed, "model_name": model, "labels": len(group), "joined": joined,
                     "quarantined": quarantine_only, "unscored": len(group) - joined - quarantine_only,
                     "computed_at": now})
    return rows


def compute_outcomes(cfg: Config, start: dt.date, end: dt.date, *,
                     results: ResultsStore | None = None) -> OutcomesResult:
    """Realized (and, for binary versions, estimated) performance of every version scored on ``start..end``.

    Args:
        cfg: the configuration; needs a ``labels`` section.
        start, end: scoring days, inclusive, in ``schedule.timezone``.
        results: the open results store to read and write (default: ``cfg.results``, opened here).

    Returns:
        The rows written to ``outcomes`` (one per (day, version) with published predictions) and
        ``label_coverage`` (one per observed day with labels).

    Raises:
        ConfigError: no ``labels`` section.
        ScoringError: ``end`` before ``start``.
        SourceError: the labels cannot be read. ModelStoreError: labels that are not classes of the model.
        PublishError: the results store cannot be read or written.
    """
    if cfg.labels is None:
        raise ConfigError("no 'labels' section in the config: add one naming the table (or query) of key, label "
                          "and observed-at columns (docs/outcomes.md)")
    if end < start:
        raise ScoringError(f"the outcomes window ends ({end}) before it starts ({start})")
    lab, model = cfg.labels, cfg.model.name
    store = results if results is not None else open_results(cfg.results)
    store.ensure_schema()
    labels = read_labels(lab, start, cfg.timezone)
    now = dt.datetime.now(dt.UTC)
    result = OutcomesResult(labels_read=len(labels), labels_without_day=int(labels["observed_day"].isna().sum()))
    contracts: dict[int, tuple[Contract, dict[str, Any]]] = {}
    models = ModelStore(cfg.model.store)

    def version_meta(version: int) -> tuple[Contract, dict[str, Any]]:
        if version not in contracts:
            meta = models.get(model, version).meta
            contracts[version] = (contract_of(meta), meta)
        return contracts[version]

    for day in day_range(start, end):
        champion, shadow, quarantined = day_published(store, model, day)
        for role, frame in (("champion", champion), ("challenger", shadow)):
            for version, rows in frame.groupby("model_version", sort=True):
                contract, meta = version_meta(int(version))
                try:
                    outcome = day_outcome(rows, contract, day, labels, lab.max_delay_days, lab.label_column,
                                          cfg.model.threshold)
                except ModelStoreError as exc:
                    raise ModelStoreError(f"labels for {day} / {model} v{version}: {exc}") from None
                judged = judge_day(contract, meta, rows, outcome.metrics, cfg.model.threshold)
                result.outcomes.append({
                    "day": day, "model_name": model, "model_version": int(version), "role": role,
                    "task": contract.task, "rows_scored": outcome.rows_scored, "labelled": outcome.labelled,
                    "coverage": outcome.coverage,
                    "labels_quarantined": count_quarantined(quarantined, day, labels, lab.max_delay_days)
                    if role == "champion" else 0,
                    "metrics": metrics_json(outcome.metrics),
                    "estimated": json.dumps(judged.estimated, sort_keys=True) if judged.estimated else None,
                    "status": judged.status, "alerts": json.dumps(judged.alerts) if judged.alerts else None,
                    "labels_as_of": _labels_as_of(labels), "computed_at": now})
    first = start - dt.timedelta(days=lab.max_delay_days)
    published, quarantined_all = published_keys(store, model, first, end), quarantined_keys(store, model, first, end)
    result.coverage = _coverage(labels, published, quarantined_all, model, start, end, lab.max_delay_days, now)
    result.ledger = [_ledger_row(r, now) for r in result.outcomes if r["status"] in ("warning", "alert")]
    store.replace_days(model, start, end, {
        OUTCOMES.name: pa.Table.from_pylist(result.outcomes, _schema(OUTCOMES)),
        LABEL_COVERAGE.name: pa.Table.from_pylist(result.coverage, _schema(LABEL_COVERAGE)),
        RUNS.name: pa.Table.from_pylist(result.ledger, _schema(RUNS))}, ledger_trigger=LEDGER_TRIGGER)
    unscored = sum(r["unscored"] for r in result.coverage)
    logger.info("outcomes of %s for %s..%s: %s (day, version) rows; %s labels read, %s of keys never scored",
                model, start, end, len(result.outcomes), len(labels), unscored)
    return result


def _labels_as_of(labels: pd.DataFrame) -> dt.datetime | None:
    stamps = pd.to_datetime(labels["observed_at"], errors="coerce", utc=True).dropna()
    return stamps.max().to_pydatetime() if len(stamps) else None


_ARROW = {"string": pa.string(), "float": pa.float64(), "int32": pa.int32(), "int64": pa.int64(),
          "date": pa.date32(), "timestamptz": pa.timestamp("us", tz="UTC"), "json": pa.string()}


def _schema(spec: Any) -> pa.Schema:
    return pa.schema([(c.name, _ARROW[c.type]) for c in spec.columns])


def recompute_recent(cfg: Config, last: dt.date | None = None) -> dict[str, Any]:
    """The daily outcomes task: recompute the ``labels.max_delay_days`` scoring days up to ``last`` (default
    yesterday in ``schedule.timezone``), so labels that arrived since yesterday update every day they belong
    to. Returns a small JSON summary (window, rows written, labels read, unscored labels, days alerting)."""
    from scoring.dates import yesterday

    if cfg.labels is None:
        raise ConfigError("no 'labels' section in the config: the outcomes task has nothing to join")
    end = last or yesterday(cfg.timezone)
    start = end - dt.timedelta(days=cfg.labels.max_delay_days)
    result = compute_outcomes(cfg, start, end)
    return {"start": start.isoformat(), "end": end.isoformat(), "rows": len(result.outcomes),
            "labels_read": result.labels_read, "unscored": sum(r["unscored"] for r in result.coverage),
            "alerts": [f"{r['day']} v{r['model_version']} {r['status']}" for r in result.outcomes
                       if r["status"] in ("warning", "alert")]}
