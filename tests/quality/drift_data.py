"""Generated days with known drift structure, for the drift tests and benchmarks/bench_drift.py.

90 business days of ``ROWS`` rows from 2026-01-05 (a Monday): the first ``TRAIN_DAYS`` are training days,
the rest are monitored. Features: ``dow`` (day of week, constant within a day), ``flag`` (boolean, 30% true),
``zinf`` (0 on 94% of rows, else a gamma value), ``season`` (a slow seasonal trend that stays inside the
training range), ``x`` (standard normal) and ``segment`` (four levels). ``SHIFTS`` lists the injected
(day index, feature) shifts; every other monitored (day, feature) pair is undrifted.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

START = dt.date(2026, 1, 5)
DAYS = 90
TRAIN_DAYS = 60
ROWS = 400
FEATURES = ["dow", "flag", "zinf", "season", "x", "segment"]
SEGMENTS = ["a", "b", "c", "d"]
# (day index, feature) -> what changes on that day
SHIFTS: dict[tuple[int, str], str] = {
    (64, "zinf"): "zero share 94% -> 11%", (65, "zinf"): "zero share 94% -> 11%",
    (68, "x"): "mean +1 sd", (69, "x"): "mean +1 sd",
    (72, "flag"): "true share 30% -> 70%", (73, "flag"): "true share 30% -> 70%",
    (77, "segment"): "level a 40% -> 5%, d 10% -> 55%", (78, "segment"): "level a 40% -> 5%, d 10% -> 55%",
    (82, "season"): "values above the training range", (83, "season"): "values above the training range",
    (86, "zinf"): "non-zero values x 4", (87, "x"): "sd x 2.5",
}


def day_frame(index: int, rng: np.random.Generator, rows: int = ROWS) -> pd.DataFrame:
    """The rows of day ``index`` with its injected shifts, if any."""
    def shifted(feature: str) -> bool:
        return (index, feature) in SHIFTS

    day = START + dt.timedelta(days=index)
    zero_p = 0.11 if shifted("zinf") and index < 80 else 0.94
    nonzero = rng.gamma(2.0, 3.0, rows) * (4.0 if shifted("zinf") and index >= 80 else 1.0)
    mean = 50 + 10 * np.sin(2 * np.pi * index / 60)  # one full cycle over the training days
    season = rng.normal(mean, 3.0, rows) + (40.0 if shifted("season") else 0.0)
    x = rng.normal(1.0 if shifted("x") and index < 80 else 0.0, 2.5 if shifted("x") and index >= 80 else 1.0, rows)
    seg_p = [0.05, 0.25, 0.15, 0.55] if shifted("segment") else [0.4, 0.25, 0.25, 0.1]
    stamps = [dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=int(s))
              for s in np.sort(rng.integers(0, 86_399, rows))]
    return pd.DataFrame({
        "id": np.arange(index * rows, (index + 1) * rows, dtype=np.int64),
        "ts": pd.to_datetime(stamps),
        "dow": np.full(rows, day.weekday(), dtype=np.int64),
        "flag": rng.random(rows) < (0.7 if shifted("flag") else 0.3),
        "zinf": np.where(rng.random(rows) < zero_p, 0.0, nonzero),
        "season": season, "x": x,
        "segment": pd.Series(rng.choice(SEGMENTS, rows, p=seg_p), dtype="str"),
    })


def make_days(seed: int = 11, days: int = DAYS, rows: int = ROWS) -> pd.DataFrame:
    """All days, with a label ``y`` that depends on x, zinf and segment."""
    rng = np.random.default_rng(seed)
    frame = pd.concat([day_frame(i, rng, rows) for i in range(days)], ignore_index=True)
    logit = 0.8 * frame["x"] + 0.05 * frame["zinf"] + (frame["segment"] == "a") * 0.7 - 1.0
    frame["y"] = (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame
