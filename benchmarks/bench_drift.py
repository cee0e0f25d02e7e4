"""Drift alerts, fixed thresholds vs thresholds calibrated on the training days, side by side.

90 generated days with known structure (tests/quality/drift_data.py: a day-of-week feature, a boolean, a
zero-inflated feature, a seasonal trend inside the training range) and shifts injected on known days and
features. The reference, the point-mass bins and the per-day baseline come from the first 60 days exactly
as registration builds them; each monitored day is judged as a run judges it. Prints, for each method, the
false alerts on undrifted (feature, day) pairs and the share of injected shifts detected (status alert),
then the per-feature detail.

    .venv/bin/python benchmarks/bench_drift.py [--warn-sd 2] [--alert-sd 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warn-sd", type=float, default=2.0)
    parser.add_argument("--alert-sd", type=float, default=3.0)
    args = parser.parse_args()

    import numpy as np

    from scoring.config import DriftConfig, ValidationConfig
    from scoring.models.reference import (
        actual_shares,
        build_reference,
        business_days,
        drift_baseline,
        expected_shares,
        psi,
    )
    from scoring.models.signature import features_from_frame
    from scoring.quality.drift import limits_for, status_of
    from tests.quality.drift_data import FEATURES, SHIFTS, START, TRAIN_DAYS, make_days

    frame = make_days()
    days = business_days(frame["ts"])
    train = frame[days < START + dt.timedelta(days=TRAIN_DAYS)]
    schema = features_from_frame(train, FEATURES)
    scores = np.full(len(train), 0.5)
    reference = build_reference(train, schema, scores)
    baseline = drift_baseline(train, days[train.index], reference, schema, scores)
    methods = {
        "fixed (psi 0.1 / 0.25)": ValidationConfig(drift=DriftConfig(method="fixed")),
        f"calibrated (mean + {args.warn_sd:g}/{args.alert_sd:g} sd of training days)":
            ValidationConfig(drift=DriftConfig(warn_sd=args.warn_sd, alert_sd=args.alert_sd)),
    }
    monitored = sorted(set(days[days >= START + dt.timedelta(days=TRAIN_DAYS)]))
    psis = {}
    for i, day in enumerate(monitored, start=TRAIN_DAYS):
        rows = frame[days == day]
        for feat in FEATURES:
            ref = reference["features"][feat]
            psis[(i, feat)] = psi(expected_shares(ref), actual_shares(ref, rows[feat]))
    print(f"{len(monitored)} monitored days x {len(FEATURES)} features; {len(SHIFTS)} injected shifts; "
          f"baseline from {baseline['windows']} training days")
    detail = {}
    for label, vcfg in methods.items():
        limits = {f: limits_for(f, baseline, vcfg) for f in FEATURES}
        status = {k: status_of(v, limits[k[1]].warn, limits[k[1]].alert) for k, v in psis.items()}
        false = [k for k, s in status.items() if s == "alert" and k not in SHIFTS]
        false_warn = [k for k, s in status.items() if s == "warn" and k not in SHIFTS]
        caught = [k for k in SHIFTS if status.get(k) == "alert"]
        flagged = [k for k in SHIFTS if status.get(k) != "ok"]
        print(f"{label:60} false alerts {len(false):3d} (false warns {len(false_warn):3d}) of "
              f"{len(status) - len(SHIFTS)} undrifted pairs; shifts alerted {len(caught)}/{len(SHIFTS)} = "
              f"{len(caught) / len(SHIFTS):.0%}, flagged (warn or alert) {len(flagged)}/{len(SHIFTS)} = "
              f"{len(flagged) / len(SHIFTS):.0%}")
        detail[label] = (limits, status)
    print("\nper feature: false alerts (fixed / calibrated), calibrated alert threshold, training-day PSI mean")
    (fixed_limits, fixed_status), (cal_limits, cal_status) = detail.values()
    for feat in FEATURES:
        f_false = sum(1 for k, s in fixed_status.items() if k[1] == feat and s == "alert" and k not in SHIFTS)
        c_false = sum(1 for k, s in cal_status.items() if k[1] == feat and s == "alert" and k not in SHIFTS)
        stats = baseline["features"][feat]
        print(f"  {feat:8} {f_false:3d} / {c_false:3d}   alert at {cal_limits[feat].alert:8.3f}   "
              f"mean {stats['mean']:.3f} sd {stats['sd']:.3f}")
    print("\ninjected shifts: PSI and status (fixed / calibrated)")
    for key, what in sorted(SHIFTS.items()):
        print(f"  day {key[0]} {key[1]:8} {what:34} PSI {psis[key]:7.3f}  {fixed_status[key]:5} / {cal_status[key]}")


if __name__ == "__main__":
    main()
