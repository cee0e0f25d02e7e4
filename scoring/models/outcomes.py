"""Realized performance of one version on one scoring day: its published predictions joined to the labels
that arrived, scored with ``task_metrics`` (the same functions as ``scoring models evaluate``).

The join is by key and day: a label joins the prediction of its key published on a scoring day ``d`` when
it was observed on ``d`` or later, at most ``max_delay_days`` after (a label observed before the prediction
was made cannot be its outcome); a label without an observed-at time joins any day. Model outputs are rebuilt
from published columns: binary from ``score`` (P(positive)), regression from ``score``, multiclass from the
``probabilities`` JSON when every row has it (``output.probabilities``), else from ``predicted_class`` as a
one-hot row, in which case log loss is left out (a one-hot "probability" would make it meaningless).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scoring.models.contract import Contract
from scoring.models.metrics import _match, task_metrics


@dataclass
class DayOutcome:
    """One (day, version): how many rows were scored and labelled, and the metrics on the labelled rows."""

    rows_scored: int
    labelled: int
    metrics: dict[str, float] = field(default_factory=dict)
    joined: pd.DataFrame | None = None  # source_key, label: the joined rows (for tests and reports)

    @property
    def coverage(self) -> float | None:
        """Labelled share of the scored rows (None for a day without scored rows)."""
        return self.labelled / self.rows_scored if self.rows_scored else None


def join_labels(keys: pd.Series, day: dt.date, labels: pd.DataFrame, max_delay_days: int) -> pd.Series:
    """The label of each key scored on ``day`` (NaN/None where none arrived in time), aligned with ``keys``.

    Args:
        keys: published ``source_key`` values (text), n.
        day: the scoring day.
        labels: ``read_labels``'s frame (one row per key: key, label, observed_day).
        max_delay_days: labels observed later than ``day + max_delay_days`` are not this day's outcome.

    Returns:
        An object Series of n labels (None where unlabelled), index of ``keys``.
    """
    observed = labels["observed_day"]
    last = day + dt.timedelta(days=max_delay_days)
    ok = observed.isna() | observed.map(lambda d: d is not None and day <= d <= last)
    usable = labels.loc[ok.to_numpy(dtype=bool)]
    lookup = pd.Series(usable["label"].to_numpy(dtype=object), index=usable["key"].to_numpy(dtype=object))
    out = keys.map(lookup)
    return out.astype(object).where(out.notna(), None)


def published_outputs(predictions: pd.DataFrame, contract: Contract) -> tuple[np.ndarray, bool]:
    """The model outputs ``task_metrics`` takes, rebuilt from published columns; and whether they are the
    model's own probabilities (False for a multiclass day published without ``probabilities``: one-hot).

    Args:
        predictions: ``score`` (binary, regression) or ``probabilities``/``predicted_class`` (multiclass), n rows.
        contract: the version's contract (task, classes, positive class).

    Returns:
        binary n x 2, multiclass n x k, regression n; float64.
    """
    score = predictions["score"].to_numpy(dtype=np.float64)
    if contract.task == "regression":
        return score, True
    if contract.task == "binary":
        out = np.empty((len(score), 2))
        out[:, contract.positive_index], out[:, 1 - contract.positive_index] = score, 1.0 - score
        return out, True
    names = [str(c) for c in contract.classes]
    probs = predictions["probabilities"] if "probabilities" in predictions else pd.Series([None] * len(score))
    if len(score) and probs.notna().all():
        rows = [p if isinstance(p, dict) else json.loads(p) for p in probs]
        return np.array([[r[n] for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names)), True
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(score), len(names)))
    out[np.arange(len(score)), [index[str(c)] for c in predictions["predicted_class"]]] = 1.0
    return out, False


def day_outcome(predictions: pd.DataFrame, contract: Contract, day: dt.date, labels: pd.DataFrame,
                max_delay_days: int, label_name: str = "label", threshold: float = 0.5) -> DayOutcome:
    """Join a day's published predictions of one version to the labels and compute the task's metrics.

    Args:
        predictions: the version's published rows of ``day`` (``source_key``, ``score``, ``predicted_class``,
            optionally ``probabilities``).
        contract: the version's contract.
        day: the scoring day.
        labels: ``read_labels``'s frame.
        max_delay_days: see ``join_labels``.
        label_name: the labels' column name, for error messages.
        threshold: binary: ``accuracy`` is also given, of ``score >= threshold`` (the published label).

    Returns:
        Rows scored, rows labelled and ``task_metrics`` on the labelled rows (empty metrics without any).

    Raises:
        ModelStoreError: labels that are not classes of the model / not numbers (``task_metrics``).
    """
    keys = predictions["source_key"].astype(str).reset_index(drop=True)
    truth = join_labels(keys, day, labels, max_delay_days)
    labelled = truth.notna()
    outcome = DayOutcome(len(keys), int(labelled.sum()))
    outcome.joined = pd.DataFrame({"source_key": keys[labelled], "label": truth[labelled]})
    if outcome.labelled:
        outputs, own = published_outputs(predictions.reset_index(drop=True), contract)
        rows = labelled.to_numpy()
        metrics = task_metrics(contract, outputs[rows], truth[labelled].reset_index(drop=True), label_name)
        if not own:
            metrics.pop("log_loss", None)
        if contract.task == "binary":
            hit = _match(truth[labelled].reset_index(drop=True), list(contract.classes)) == contract.positive_index
            score = predictions["score"].to_numpy(dtype=np.float64)[rows]
            metrics["accuracy"] = float(np.mean((score >= threshold) == hit))
        outcome.metrics = metrics
    return outcome


def count_quarantined(quarantined_keys: pd.Series, day: dt.date, labels: pd.DataFrame, max_delay_days: int) -> int:
    """How many of a day's quarantined keys got a label (each key once, whatever its number of rules)."""
    keys = pd.Series(pd.unique(quarantined_keys.dropna().astype(str)), dtype=object)
    return int(join_labels(keys, day, labels, max_delay_days).notna().sum())


def metrics_json(metrics: dict[str, Any]) -> str:
    """The ``metrics`` column's JSON (finite floats; NaN never written)."""
    return json.dumps({k: v for k, v in metrics.items() if not (isinstance(v, float) and np.isnan(v))},
                      sort_keys=True)
