"""A day's performance judged against its version's reference band: the realized metrics (labels joined)
and, for binary classifiers, the CBPE estimate made from the published scores before any label.

Bands come from the version's registration (``scoring.models.performance_ref``): mean -/+ 2 standard deviations
of the metric over reference chunks is a warning, -/+ 3 an alert (NannyML's default for estimated metrics is
3). Higher-is-better metrics alert below the band, error metrics (RMSE, MAE) above it. Realized metrics are
judged on days with at least ``MIN_LABELLED`` labelled rows. Regressors get no estimate: NannyML's DLE would
need a second model fitted on the reference errors, which this project does not train (docs/outcomes.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from scoring.models.cbpe import estimate_binary
from scoring.models.contract import Contract

MIN_LABELLED = 30
LOWER_IS_BETTER = ("rmse", "mae", "log_loss", "brier")
RANK = {"ok": 0, "warning": 1, "alert": 2}


@dataclass
class Judged:
    """Estimate (binary), overall status (ok | warning | alert | unknown: no band) and the alerts raised."""

    estimated: dict[str, Any] = field(default_factory=dict)
    status: str = "unknown"
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _verdict(metric: str, value: float, band: dict[str, float]) -> str:
    if metric in LOWER_IS_BETTER:
        return "alert" if value > band["upper"] else "warning" if value > band["warn_upper"] else "ok"
    return "alert" if value < band["lower"] else "warning" if value < band["warn_lower"] else "ok"


def judge_day(contract: Contract, meta: dict[str, Any], predictions: pd.DataFrame, metrics: dict[str, float],
              threshold: float) -> Judged:
    """Estimate (binary) and judge one (day, version).

    Args:
        contract: the version's contract.
        meta: the version's metadata (``performance`` from registration; versions registered before it have
            none: status ``unknown``).
        predictions: the version's published rows of the day (``score``).
        metrics: the realized metrics of the day (``task_metrics``; ``rows`` = labelled rows).
        threshold: the binary decision threshold (``model.threshold``).

    Returns:
        The estimate, the worst verdict over the banded metrics, and one entry per metric outside its
        warning band: ``{"metric", "kind": realized|estimated, "value", "status", "band": [lower, upper]}``.
    """
    perf = meta.get("performance") or {}
    judged = Judged()
    if contract.task == "binary" and perf:
        calibrator = (perf.get("calibration") or {}).get("calibrator")
        judged.estimated = estimate_binary(predictions["score"].to_numpy(dtype=float), threshold, calibrator)
    checks: list[tuple[str, str, float, dict[str, float]]] = []
    if metrics.get("rows", 0) >= MIN_LABELLED:
        checks += [("realized", m, metrics[m], b) for m, b in (perf.get("bands") or {}).items() if m in metrics]
    checks += [("estimated", m, judged.estimated[m], b) for m, b in (perf.get("estimated_bands") or {}).items()
               if m in judged.estimated]
    if not checks:
        return judged
    worst = "ok"
    for kind, metric, value, band in checks:
        verdict = _verdict(metric, value, band)
        if verdict != "ok":
            judged.alerts.append({"metric": metric, "kind": kind, "value": value, "status": verdict,
                                  "band": [band["lower"], band["upper"]]})
        worst = max(worst, verdict, key=RANK.__getitem__)
    judged.status = worst
    return judged
