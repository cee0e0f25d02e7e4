"""Drift monitoring: PSI of each feature and of the score against the training reference.

Chunks return bin/level counts (bounded: one short list per feature), the run adds them up, and the
shares are compared with the reference kept in the model's metadata (``scoring.models.reference``). The counts
follow ``reference.actual_shares`` exactly, so PSI is the same as computing it on the whole day at once.
Drift counts cover the rows that were scored (the rows the model saw), not the quarantined ones.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.errors import ScoringError
from scoring.models.reference import MISSING, N_BINS, OTHER, expected_shares, numeric_counts, psi

if TYPE_CHECKING:
    from scoring.config import Config, ValidationConfig

logger = logging.getLogger(__name__)

SCORE = "__score__"  # the drift row of the model's score
DRIFT_COLUMNS = ["run_id", "day", "model_name", "model_version", "feature", "psi", "status", "warn_at", "alert_at",
                 "basis"]


def _numeric_counts(ref: dict[str, Any], col: pa.ChunkedArray) -> list[int]:
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    x = np.asarray(pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.float64)
    return numeric_counts(ref, x)


def _categorical_counts(ref: dict[str, Any], col: pa.ChunkedArray) -> list[int]:
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    found: dict[str, int] = {}
    for item in pc.value_counts(col).to_pylist():
        key = MISSING if item["values"] is None else item["values"]
        found[key] = found.get(key, 0) + int(item["counts"])
    known = [k for k in ref["shares"] if k != OTHER]
    # booleans: Arrow spells them true/false, as level_key does (references written before it say True/False)
    counts = [found.get(k, found.get(k.lower(), 0)) for k in known]
    if OTHER in ref["shares"]:
        counts.append(len(col) - sum(counts))
    return counts


def chunk_counts(refs: dict[str, Any], table: pa.Table, scores: np.ndarray) -> dict[str, list[int]]:
    """Counts per reference bin or level of every feature in ``refs`` (present in ``table``) and of the score
    (``refs[SCORE]``, when given with quantile bins, bins a regression's prediction; else tenths of [0, 1])."""
    out: dict[str, list[int]] = {}
    for name, ref in refs.items():
        if name == SCORE or name not in table.column_names or not expected_shares(ref):
            continue
        col = table.column(name)
        out[name] = _numeric_counts(ref, col) if ref["kind"] == "numeric" else _categorical_counts(ref, col)
    score_ref = refs.get(SCORE)
    if score_ref is not None and score_ref["kind"] == "numeric":  # a regression's prediction: quantile bins
        out[SCORE] = _numeric_counts(score_ref, pa.chunked_array([pa.array(np.asarray(scores, dtype=np.float64))]))
        return out
    counts, _ = np.histogram(np.asarray(scores, dtype=np.float64), bins=N_BINS, range=(0.0, 1.0))
    out[SCORE] = [int(c) for c in counts]
    return out


def merge_counts(parts: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    """Element-wise sum of chunk counts."""
    total: dict[str, list[int]] = {}
    for part in parts:
        for name, counts in part.items():
            if name in total:
                total[name] = [a + b for a, b in zip(total[name], counts, strict=True)]
            else:
                total[name] = list(counts)
    return total


def status_of(value: float, warn: float, alert: float) -> str:
    """ok below ``warn``, warn below ``alert``, else alert."""
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


@dataclass(frozen=True)
class Limits:
    """The PSI thresholds one feature is judged by, and where they come from."""

    warn: float
    alert: float
    basis: str  # calibrated | fixed | configured | excluded


def limits_for(name: str, baseline: dict[str, Any] | None, cfg: ValidationConfig) -> Limits:
    """Thresholds of feature ``name`` (``SCORE`` for the score).

    ``validation.drift.features`` wins; ``method: calibrated`` with a baseline of the same window size judges
    the feature against its own training windows: warn at mean + ``warn_sd`` sd, alert at mean + ``alert_sd``
    sd (NannyML's standard-deviation thresholds), never below the fixed ``psi_warn``/``psi_alert``; otherwise
    the fixed thresholds.
    """
    dcfg = cfg.drift
    if name in dcfg.exclude:
        return Limits(math.inf, math.inf, "excluded")
    if name in dcfg.features:
        own = dcfg.features[name]
        return Limits(own.warn, max(own.alert, own.warn), "configured")
    stats = None
    if dcfg.method == "calibrated" and baseline and baseline.get("window_days") == dcfg.window_days:
        stats = baseline.get("score") if name == SCORE else baseline.get("features", {}).get(name)
    if not stats:
        return Limits(cfg.psi_warn, cfg.psi_alert, "fixed")
    warn = max(cfg.psi_warn, stats["mean"] + dcfg.warn_sd * stats["sd"])
    return Limits(warn, max(cfg.psi_alert, stats["mean"] + dcfg.alert_sd * stats["sd"], warn), "calibrated")


def psi_by_feature(reference: dict[str, Any], counts: dict[str, list[int]], rows: int | None = None
                   ) -> dict[str, float]:
    """PSI of every counted feature (and ``SCORE``) against ``reference``; empty when no row was counted.

    ``rows`` is the number of rows counted; by default the score's counts add up to it (every scored row
    has a score), which also holds for pooled days. A feature's counts may add up to less: levels unseen in
    training fall in no bucket when the reference has no 'other' level.
    """
    if rows is None:
        rows = sum(counts.get(SCORE, []))
    if rows <= 0:
        return {}
    out: dict[str, float] = {}
    for name, got in counts.items():
        ref = reference.get("score") if name == SCORE else reference.get("features", {}).get(name)
        if ref is None:
            continue
        out[name] = psi(expected_shares(ref), [c / rows for c in got])
    return out


def drift_table(run_id: str, day: dt.date, model_name: str, model_version: int, values: dict[str, float],
                limits: dict[str, Limits], counts: dict[str, list[int]] | None = None) -> pa.Table:
    """Rows of the ``drift`` table for one run: PSI, status, the thresholds used and the run's own counts
    (kept so later runs can pool days)."""
    names = list(values)
    status = [("ok" if limits[n].basis == "excluded" else status_of(values[n], limits[n].warn, limits[n].alert))
              for n in names]

    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None

    return pa.table({
        "run_id": pa.array([run_id] * len(names), pa.string()),
        "day": pa.array([day] * len(names), pa.date32()),
        "model_name": pa.array([model_name] * len(names), pa.string()),
        "model_version": pa.array([model_version] * len(names), pa.int32()),
        "feature": pa.array(names, pa.string()),
        "psi": pa.array([values[n] for n in names], pa.float64()),
        "status": pa.array(status, pa.string()),
        "warn_at": pa.array([finite(limits[n].warn) for n in names], pa.float64()),
        "alert_at": pa.array([finite(limits[n].alert) for n in names], pa.float64()),
        "basis": pa.array([limits[n].basis for n in names], pa.string()),
        "counts": pa.array([json.dumps((counts or {}).get(n)) for n in names], pa.string()),
    })


def drift_rows(cfg: Config, start: dt.date, end: dt.date, *, feature: str | None = None,
               flagged: bool = False) -> list[dict[str, Any]]:
    """The drift table's rows of the configured model for ``start``..``end`` (inclusive), by day and feature.

    Only successful runs publish drift rows, and a re-run replaces its day's, so each day shows its
    latest published run.
    """
    from scoring.storage.results import open_results

    results = open_results(cfg.results)
    sql = (f"SELECT {', '.join(DRIFT_COLUMNS)} FROM {results.table_name('drift')} "  # noqa: S608 - quoted
           "WHERE model_name = $1 AND day BETWEEN $2 AND $3")
    params: list[Any] = [cfg.model.name, start, end]
    if feature:
        sql += " AND feature = $4"
        params.append(feature)
    try:
        table = results.query(sql + " ORDER BY day, feature", params)
    except ScoringError:
        raise
    except Exception as exc:  # noqa: BLE001 - a results database from before drift monitoring
        raise ScoringError(f"cannot read the drift table: {str(exc).splitlines()[0]} (run a day first)") from None
    rows = table.to_pylist()
    return [r for r in rows if r["status"] != "ok"] if flagged else rows
