"""Real `scoring run` subprocesses with a fault injected (SCORING_FAULT), and what a converged day looks like."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from tests.helpers import source_day

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120


def cli(cfg_path: Path, day: dt.date, fault: str | None = None, *extra: str,
        wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    """``python -m scoring.cli run`` on ``day`` with ``SCORING_FAULT=fault``; bounded in time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop("SCORING_FAULT", None)
    if fault:
        env["SCORING_FAULT"] = fault
    args = [sys.executable, "-m", "scoring.cli", "run", "-c", str(cfg_path), "--date", day.isoformat(),
            "--rows-per-chunk", "200", "--show", "0", *extra]
    if not wait:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def wait_for(path: Path, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def expected_scores(source_db: Path, store: Path, day: dt.date) -> dict[str, float]:
    """The model's own predict_proba for every row of the day (the sample day has no quarantined rows)."""
    src = source_day(source_db, day)
    model = joblib.load(store / "loan_default" / "1" / "model.joblib")
    return dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))


def assert_exact(pred: pd.DataFrame, expected: dict[str, float], rows_in: int, quarantined: int) -> None:
    """Published scores equal predict_proba (|diff| <= 1e-9), one row per key, rows_in = scored + quarantined."""
    assert pred["source_key"].is_unique
    assert rows_in == len(pred) + quarantined
    got = pred.set_index("source_key")["score"]
    np.testing.assert_allclose(got.to_numpy(), [expected[k] for k in got.index], rtol=0, atol=1e-9)


def staged_files(staging: Path) -> list[Path]:
    return [p for p in staging.rglob("*") if p.is_file() and p.name != ".lock"] if staging.exists() else []
