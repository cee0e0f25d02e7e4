"""``scoring models evaluate``: model versions compared on the labelled rows of a window, through the
production scoring path.

Each business day of the window is read from the source in batches; rows with a label pass the key gate and
every version scores them with ``score_table`` (the run's conversion to the registered dtypes, then the
model), so the figures are those of what a run would publish. Only rows every version scored are compared
(a row one model refuses, e.g. an unseen level, is left out for all). Metrics are ``task_metrics``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.config import Config
from scoring.dates import DataInterval
from scoring.errors import ConfigError, ScoringError
from scoring.models.contract import Contract, contract_of
from scoring.models.metrics import task_metrics
from scoring.models.scorer import ScoreSpec, score_table
from scoring.models.store import ModelStore, ModelVersion
from scoring.quality.gate import apply_gate
from scoring.quality.schema_check import check_schema
from scoring.run.chunks import key_gate
from scoring.storage.sources import open_source

logger = logging.getLogger(__name__)

BATCH_ROWS = 50_000
HIGHER_IS_BETTER = ("roc_auc", "accuracy", "macro_f1", "r2")
LOWER_IS_BETTER = ("log_loss", "brier", "rmse", "mae")
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}


@dataclass
class Evaluation:
    """Metrics per version on the same rows of ``[start, end]``."""

    start: dt.date
    end: dt.date
    label_column: str
    rows: int
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)

    def record(self, version: int) -> dict[str, Any]:
        """The evaluations-log entry of one version."""
        return {"version": version, "evaluated_at": dt.datetime.now(dt.UTC).isoformat(),
                "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
                "label_column": self.label_column, "rows": self.rows, "metrics": self.metrics[version],
                "compared_with": sorted(v for v in self.metrics if v != version)}


def label_column(cfg: Config) -> str:
    """``promotion.label_column``, else ``training.label_column``; ConfigError when neither is set."""
    name = cfg.promotion.label_column or (cfg.training.label_column if cfg.training else None)
    if name is None:
        raise ConfigError("no label column to evaluate against: set promotion.label_column (or "
                          "training.label_column)")
    return name


def _outputs(predictions: pa.Table, contract: Contract) -> np.ndarray:
    """The model outputs ``task_metrics`` takes, rebuilt from published columns: binary n x 2 (only the
    positive column is used), multiclass n x k from ``probabilities``, regression n."""
    score = predictions.column("score").to_numpy()
    if contract.task == "regression":
        return score
    if contract.task == "binary":
        out = np.empty((len(score), 2))
        out[:, contract.positive_index], out[:, 1 - contract.positive_index] = score, 1.0 - score
        return out
    names = [str(c) for c in contract.classes]
    rows = [json.loads(p) for p in predictions.column("probabilities").to_pylist()]
    return np.array([[r[n] for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))


def evaluate_versions(cfg: Config, versions: list[ModelVersion], start: dt.date, end: dt.date) -> Evaluation:
    """Score the labelled rows of business days ``start``..``end`` with every version and compute metrics.

    Args:
        cfg: the configuration (source, key column, threshold, label column).
        versions: the versions to compare (e.g. a candidate and the champion).
        start, end: the window, inclusive, in ``schedule.timezone``.

    Returns:
        The metrics of each version on the rows all of them scored.

    Raises:
        ConfigError: no label column configured, or the source lacks it.
        SchemaError: the source lacks a column a version needs.
        ScoringError: ``end`` before ``start``.
    """
    if end < start:
        raise ScoringError(f"the evaluation window ends ({end}) before it starts ({start})")
    label, key = label_column(cfg), cfg.source.key_column
    store = ModelStore(cfg.model.store)
    specs = {mv.version: ScoreSpec(key, contract_of(mv.meta), cfg.model.threshold, probabilities=True)
             for mv in versions}
    outputs: dict[int, dict[tuple[str, str], Any]] = {mv.version: {} for mv in versions}
    labels: dict[tuple[str, str], Any] = {}
    with open_source(cfg.source) as source:
        schema = source.schema()
        if label not in schema.names:
            raise ConfigError(f"label column {label!r} (promotion.label_column) is not a column of the source")
        for mv in versions:
            check_schema(schema, mv.features, key)
        models = {mv.version: store.load(mv) for mv in versions}
        day = start
        while day <= end:
            for batch in source.batches(DataInterval.for_day(day, cfg.timezone), BATCH_ROWS):
                table = pa.Table.from_batches([batch])
                table = apply_gate(key_gate(key), table.filter(pc.is_valid(table.column(label)))).good
                keys = pc.cast(table.column(key), pa.string()).to_pylist()
                labels.update(zip(((day.isoformat(), k) for k in keys), table.column(label).to_pylist(),
                                  strict=True))
                for version, spec in specs.items():
                    scored = score_table(models[version], table, spec).predictions
                    out = _outputs(scored, spec.contract)
                    rows = ((day.isoformat(), k) for k in scored.column("source_key").to_pylist())
                    outputs[version].update(zip(rows, out, strict=True))
            day += dt.timedelta(days=1)
    common = sorted(set.intersection(*(set(o) for o in outputs.values()))) if outputs else []
    result = Evaluation(start, end, label, len(common))
    truth = pd.Series([labels[k] for k in common], dtype=object)
    for version, spec in specs.items():
        out = np.array([outputs[version][k] for k in common])
        if not common:
            out = out.reshape((0, len(spec.contract.classes))) if spec.contract.task != "regression" else out
        result.metrics[version] = task_metrics(spec.contract, out, truth, label)
    logger.info("evaluated versions %s on %s labelled rows of %s..%s", sorted(specs), len(common), start, end)
    return result


def metric_direction(metric: str) -> int:
    """+1 when higher is better, -1 when lower is; ConfigError for a metric that is not comparable."""
    if metric in HIGHER_IS_BETTER:
        return 1
    if metric in LOWER_IS_BETTER:
        return -1
    raise ConfigError(f"promotion.metric {metric!r} is not one of {', '.join(HIGHER_IS_BETTER + LOWER_IS_BETTER)}")
