"""`scoring backfill --parallel 2` equals the sequential backfill: same predictions per row, same ledger counts;
a day whose source rows cannot be read fails alone and is counted in the exit code."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_config
from tests.helpers import ledger, published, source_day

ROOT = Path(__file__).resolve().parents[2]
FIRST, LAST = dt.date(2026, 3, 2), dt.date(2026, 3, 7)
BAD = dt.date(2026, 3, 4)
DAYS = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
# Every row of BAD fails when its credit_score is read: a corrupt day that only the reads of that day hit.
QUERY = ("SELECT * REPLACE (CASE WHEN applied_at >= TIMESTAMP '2026-03-04' AND applied_at < TIMESTAMP "
         "'2026-03-05' THEN error('corrupt rows on 2026-03-04') ELSE credit_score END AS credit_score) "
         "FROM loan_applications")
COMPARED = ["day", "source_key", "score", "label", "model_name", "model_version"]
COUNTS = ["day", "model_version", "status", "rows_in", "rows_rejected", "rows_scored", "trigger"]


def backfill(cfg_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "scoring.cli", "backfill", "-c", str(cfg_path),
                           "--start", FIRST.isoformat(), "--end", LAST.isoformat(), *extra],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sample_db: Path, trained_store: Path) -> dict:
    out = {}
    for name, extra in (("sequential", ()), ("parallel", ("--parallel", "2"))):
        folder = tmp_path_factory.mktemp(name)
        cfg_path = write_config(folder, sample_db, trained_store, chunking={"rows_per_chunk": 250},
                                source={"kind": "duckdb", "path": str(sample_db), "query": QUERY, "table": None,
                                        "timestamp_column": "applied_at", "key_column": "application_id"})
        proc = backfill(cfg_path, *extra)
        out[name] = {"proc": proc, "results": folder / "results.duckdb", "staging": folder / "staging"}
    return out


def test_the_bad_day_fails_alone_and_counts_in_the_exit_code(runs: dict) -> None:
    for name, run in runs.items():
        proc = run["proc"]
        assert proc.returncode == 1, (name, proc.stdout[-3000:], proc.stderr[-3000:])
        assert "1 of 6 days failed" in proc.stderr, name
        assert "Traceback" not in proc.stdout + proc.stderr, name
        assert "corrupt rows on 2026-03-04" in proc.stdout, name  # the day's line in the summary says why
        days = set(published(run["results"])["day"].astype(str))
        assert days == {str(d) for d in DAYS if d != BAD}, name  # the days after the bad one were published


def test_parallel_equals_sequential_row_by_row_and_in_the_ledger(runs: dict) -> None:
    seq, par = published(runs["sequential"]["results"]), published(runs["parallel"]["results"])
    assert len(par) == 5 * 600 and par.groupby("day")["source_key"].apply(lambda s: s.is_unique).all()
    pd.testing.assert_frame_equal(par[COMPARED], seq[COMPARED])
    seq_runs, par_runs = (_ledger(runs[name]["results"]) for name in ("sequential", "parallel"))
    assert par_runs["day"].tolist() == seq_runs["day"].tolist() == DAYS  # one row per day
    pd.testing.assert_frame_equal(par_runs[COUNTS], seq_runs[COUNTS])
    assert set(par_runs["trigger"]) == {"backfill"}
    bad = par_runs[par_runs["day"] == BAD].iloc[0]
    assert bad["status"] == "failed" and "corrupt rows on 2026-03-04" in bad["error"]
    good = par_runs[par_runs["status"] == "success"]
    assert len(good) == 5 and (good["rows_in"] == good["rows_scored"] + good["rows_rejected"]).all()
    assert [json.loads(d)["chunks"] for d in good["details"]] == [3] * 5  # 600 rows in chunks of 250


def _ledger(results: Path) -> pd.DataFrame:
    runs = ledger(results)
    runs["day"] = pd.to_datetime(runs["day"]).dt.date
    return runs.sort_values("day").reset_index(drop=True)


def test_published_scores_equal_the_models_own_output(runs: dict, sample_db: Path, trained_store: Path) -> None:
    model = joblib.load(trained_store / "loan_default" / "1" / "model.joblib")
    par = published(runs["parallel"]["results"])
    for day in DAYS:
        if day == BAD:
            continue
        src = source_day(sample_db, day)
        expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
        got = par[par["day"].astype(str) == str(day)].set_index("source_key")["score"]
        assert len(got) > 0
        np.testing.assert_allclose(got.to_numpy(), [expected[k] for k in got.index], rtol=0, atol=1e-9)


def test_published_days_leave_no_staged_chunks(runs: dict) -> None:
    left = [p for p in runs["parallel"]["staging"].rglob("*.parquet")]
    assert all(BAD.isoformat() in str(p) for p in left), left


def _children(pid: int) -> list[int]:
    """Worker processes (multiprocessing spawn) whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_sigkilled_parent(tmp_path: Path, sample_db: Path, trained_store: Path) -> None:
    import signal
    import time

    cfg_path = write_config(tmp_path, sample_db, trained_store, chunking={"rows_per_chunk": 50})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-m", "scoring.cli", "backfill", "-c", str(cfg_path), "--start",
                               FIRST.isoformat(), "--end", LAST.isoformat(), "--parallel", "2"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while len(workers) < 2 and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _children(parent.pid)
        assert workers, "the backfill never started its workers"
        time.sleep(1.0)  # the workers' initializers have run (they are scoring or loading the model)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], "workers outlived their SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=30)
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_a_worker_killed_on_one_day_fails_that_day_alone(tmp_path: Path, sample_db: Path,
                                                         trained_store: Path) -> None:
    """A parallel backfill's worker SIGKILLed while it scores BAD (``SCORING_FAULT=backfill_day_<day>``): the
    other days publish with the model's own scores, BAD gets a ``failed`` ledger row naming the dead worker,
    nothing of BAD is published, and a rerun of that day succeeds."""
    first, last = BAD - dt.timedelta(days=1), BAD + dt.timedelta(days=1)
    cfg_path = write_config(tmp_path, sample_db, trained_store, chunking={"rows_per_chunk": 250})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "OMP_NUM_THREADS": "1",
           "SCORING_FAULT": f"backfill_day_{BAD.isoformat()}"}
    proc = subprocess.run([sys.executable, "-m", "scoring.cli", "backfill", "-c", str(cfg_path), "--start",
                           first.isoformat(), "--end", last.isoformat(), "--parallel", "2"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "1 of 3 days failed" in proc.stderr and "Traceback" not in proc.stdout + proc.stderr
    results = tmp_path / "results.duckdb"
    out = published(results)
    assert set(out["day"].astype(str)) == {str(first), str(last)}
    model = joblib.load(trained_store / "loan_default" / "1" / "model.joblib")
    for day in (first, last):
        src = source_day(sample_db, day)
        expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
        got = out[out["day"].astype(str) == str(day)].set_index("source_key")["score"]
        assert len(got) == len(src)
        np.testing.assert_allclose(got.to_numpy(), [expected[k] for k in got.index], rtol=0, atol=1e-9)
    runs = _ledger(results)
    assert runs["day"].tolist() == [first, BAD, last]
    assert runs["status"].tolist() == ["success", "failed", "success"] and set(runs["trigger"]) == {"backfill"}
    dead = runs.iloc[1]
    assert f"worker process scoring {BAD} died" in dead["error"] and dead["model_version"] == 1
    assert json.loads(dead["details"])["model_rule"] == "alias-now"
    env.pop("SCORING_FAULT")
    again = subprocess.run([sys.executable, "-m", "scoring.cli", "backfill", "-c", str(cfg_path), "--start",
                            BAD.isoformat(), "--end", BAD.isoformat()],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stdout[-3000:]
    assert len(published(results, BAD)) == len(source_day(sample_db, BAD))
