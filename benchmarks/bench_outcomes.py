"""Performance monitoring on generated days with known changes: realized metrics (labels joined), CBPE's
estimate (before labels) and the fixed-threshold drift method, alert rates side by side.

A logistic model is fitted on 20 reference days (features x1..x4; the outcome depends on x1..x3 only), and
its reference is built as registration builds it (``performance_reference``: calibration check, ROC AUC and
accuracy bands over the reference days; ``build_reference``: PSI bins). 60 monitored days follow:

    days  0-19, 30-39  stable                              (no change: any alert is a false alarm)
    days 20-29         concept drift, no input drift       (x1's effect on the outcome drops: performance drops)
    days 40-49         input drift, no performance change  (x4, unused by the outcome, shifts by 2 sd)
    days 50-59         input drift with a performance drop (x1's spread shrinks to 0.3: less to rank on)

Each day is judged as ``scoring outcomes`` judges it (``scoring.quality.performance.judge_day``): a realized
or estimated ROC AUC / accuracy outside mean -/+ 3 sd of the reference days is an alert. The drift method is
the fixed one (any feature's PSI >= validation.psi_alert 0.25). Prints per segment the share of days each
method alerts on, and CBPE's |estimated - realized| ROC AUC against the reference band's width.

    .venv/bin/python benchmarks/bench_outcomes.py [--rows-per-day 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEGMENTS = [("stable", list(range(0, 20)) + list(range(30, 40))), ("concept drift", list(range(20, 30))),
            ("input drift, same perf.", list(range(40, 50))), ("input drift, perf. drop", list(range(50, 60)))]
FEATURES = ["x1", "x2", "x3", "x4"]


def _day(rng, n: int, day: int):  # noqa: ANN202 - benchmark helper
    import numpy as np
    import pandas as pd

    x = {f: rng.normal(0.0, 1.0, n) for f in FEATURES}
    effect = 1.5
    if 20 <= day < 30:
        effect = 0.2  # concept drift: the same inputs, a weaker relation to the outcome
    if 40 <= day < 50:
        x["x4"] = rng.normal(2.0, 1.0, n)
    if 50 <= day < 60:
        x["x1"] = rng.normal(0.0, 0.3, n)
    logit = effect * x["x1"] + 1.0 * x["x2"] - 0.5 * x["x3"] - 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(x), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--reference-days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from scoring.models.cbpe import estimate_binary
    from scoring.models.contract import Contract
    from scoring.models.performance_ref import performance_reference
    from scoring.models.reference import actual_shares, build_reference, expected_shares, psi
    from scoring.quality.performance import judge_day

    rng = np.random.default_rng(args.seed)
    n = args.rows_per_day
    parts = [_day(rng, n, -1) for _ in range(args.reference_days)]
    frame = pd.concat([p[0] for p in parts], ignore_index=True)
    labels = np.concatenate([p[1] for p in parts])
    model = LogisticRegression().fit(frame, labels)
    outputs = model.predict_proba(frame)
    contract = Contract("binary", (), (0, 1), 1)
    days = pd.Series(np.repeat(np.arange(args.reference_days), n), dtype=object)
    perf = performance_reference(contract, outputs, pd.Series(labels), days, "reference days")
    schema = [{"name": f, "type": "float"} for f in FEATURES]
    drift_ref = build_reference(frame, schema, outputs[:, 1])
    band = perf["bands"]["roc_auc"]
    est_band = perf["estimated_bands"]["roc_auc"]
    cal = perf["calibration"]
    print(f"reference: {args.reference_days} days x {n} rows; ECE {cal['ece']:.4f} "
          f"({'calibrated on the reference' if cal['calibrated_on_reference'] else 'scores used as they are'}); "
          f"ROC AUC band {band['lower']:.4f}..{band['upper']:.4f} (mean {band['mean']:.4f}, sd {band['sd']:.4f}); "
          f"estimated band {est_band['lower']:.4f}..{est_band['upper']:.4f}")

    rows = []
    for day in range(60):
        x, y = _day(rng, n, day)
        score = model.predict_proba(x)[:, 1]
        realized = {"rows": n, "roc_auc": float(roc_auc_score(y, score)),
                    "accuracy": float(np.mean((score >= 0.5) == y))}
        judged = judge_day(contract, {"performance": perf}, pd.DataFrame({"score": score}), realized, 0.5)
        kinds = {a["kind"] for a in judged.alerts if a["status"] == "alert"}
        max_psi = max(psi(expected_shares(drift_ref["features"][f]), actual_shares(drift_ref["features"][f], x[f]))
                      for f in FEATURES)
        est = estimate_binary(score, 0.5, cal["calibrator"])
        rows.append({"day": day, "realized_auc": realized["roc_auc"], "estimated_auc": est["roc_auc"],
                     "realized_alert": "realized" in kinds, "cbpe_alert": "estimated" in kinds,
                     "drift_alert": max_psi >= 0.25, "max_psi": max_psi})
    table = pd.DataFrame(rows).set_index("day")

    print(f"\n{'segment':<26}{'days':>5}{'realized AUC':>14}{'CBPE AUC':>10}{'realized':>10}{'CBPE':>8}"
          f"{'drift (fixed)':>15}")
    print(f"{'':<26}{'':>5}{'(median)':>14}{'(median)':>10}{'alerts':>10}{'alerts':>8}{'alerts':>15}")
    for name, members in SEGMENTS:
        part = table.loc[members]
        print(f"{name:<26}{len(part):>5}{part['realized_auc'].median():>14.4f}{part['estimated_auc'].median():>10.4f}"
              f"{part['realized_alert'].mean():>10.0%}{part['cbpe_alert'].mean():>8.0%}{part['drift_alert'].mean():>15.0%}")
    undrifted = table.loc[SEGMENTS[0][1] + SEGMENTS[2][1]]
    diff = (undrifted["estimated_auc"] - undrifted["realized_auc"]).abs()
    width = band["upper"] - band["lower"]
    print(f"\nCBPE on the 40 days without a performance change: median |estimated - realized| ROC AUC "
          f"{diff.median():.4f}, max {diff.max():.4f}; within the band's width ({width:.4f}) on "
          f"{(diff <= width).mean():.0%} of days")
    dropped = table.loc[SEGMENTS[1][1] + SEGMENTS[3][1]]
    quiet = table.loc[SEGMENTS[0][1] + SEGMENTS[2][1]]
    for label, column in (("realized (labels)", "realized_alert"), ("CBPE (no labels)", "cbpe_alert"),
                          ("drift, fixed PSI 0.25", "drift_alert")):
        print(f"{label:<24} hit rate on dropped days {dropped[column].mean():>5.0%}   "
              f"(concept {table.loc[SEGMENTS[1][1], column].mean():.0%}, input {table.loc[SEGMENTS[3][1], column].mean():.0%})"
              f"   no alert on days without a drop {1 - quiet[column].mean():>5.0%}")


if __name__ == "__main__":
    main()
