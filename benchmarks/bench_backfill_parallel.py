"""Parallel backfill benchmark: a 10-day `scoring backfill`, sequential vs `--parallel 2`, same data, one run.

Builds a DuckDB source (one training day plus ``--days`` days of ``--rows-per-day`` seeded rows), trains and
registers the sample HistGradientBoosting Pipeline, then times, interleaved over ``--repeat`` rounds, the real
CLI in a fresh interpreter for each contender, each round into a fresh results file:

    sequential   scoring backfill --start D1 --end D10            (each day one run_day, workers: 1)
    parallel-2   scoring backfill --start D1 --end D10 --parallel 2

OMP/BLAS threads are pinned to 1 in every process (the CLI and its spawned workers inherit the environment),
so on 2 cores the comparison is one core against two. The outputs are checked identical (every published
score, label and ledger count) before the figures are printed. Target: parallel-2 >= 1.6x sequential.
CPU seconds (workers included) and cores used (CPU / wall) are printed next to the times: on a machine other
work keeps busy, Linux's fair scheduler (autogroups: one share per session) gives the backfill's process tree
about one share however many processes it has, and "cores used" shows it.

    .venv/bin/python benchmarks/bench_backfill_parallel.py [--rows-per-day 100000] [--days 10] [--repeat 3]

``measure(rows_per_day, days, repeat)`` returns the figures as a dict, for a combined scale-out benchmark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN_DAY = dt.date(2026, 5, 31)
FIRST_DAY = dt.date(2026, 6, 1)
TARGET = 1.6
THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                  "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}


def build(folder: Path, rows_per_day: int, days: int) -> Path:
    """The source (a training day + ``days`` days), the trained model, a config; returns the config path."""
    import duckdb

    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    db = folder / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        for i, day in enumerate([TRAIN_DAY, *(FIRST_DAY + dt.timedelta(days=d) for d in range(days))]):
            batch = generate_day(day, 100_000 if day == TRAIN_DAY else rows_per_day, seed=11)
            con.register("batch", batch)
            con.execute("CREATE TABLE loan_applications AS SELECT * FROM batch" if i == 0
                        else "INSERT INTO loan_applications SELECT * FROM batch")
            con.unregister("batch")
    text = (ROOT / "scoring.yaml").read_text()
    text = text.replace("path: sample_data/sample.duckdb", f"path: {db}")
    text = text.replace("store: models", f"store: {folder / 'models'}")
    cfg_path = folder / "scoring.yaml"
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    write_version_suite(cfg, train_model(cfg, TRAIN_DAY, TRAIN_DAY))
    return cfg_path


def contender_config(cfg_path: Path, folder: Path) -> Path:
    """The config with its own results file and staging folder (every round starts from an empty results DB)."""
    folder.mkdir(parents=True)
    text = cfg_path.read_text()
    text = text.replace("path: results/results.duckdb", f"path: {folder / 'results.duckdb'}")
    text = text.replace("staging_dir: results/staging", f"staging_dir: {folder / 'staging'}")
    out = folder / "scoring.yaml"
    out.write_text(text)
    return out


def run_backfill(cfg_path: Path, days: int, parallel: int) -> tuple[float, float]:
    """Wall-clock and CPU (user + system, worker processes included) seconds of one `scoring backfill` in a
    fresh interpreter (interpreter start included)."""
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    cmd = [sys.executable, "-m", "scoring.cli", "backfill", "-c", str(cfg_path), "--start", FIRST_DAY.isoformat(),
           "--end", last.isoformat()] + (["--parallel", str(parallel)] if parallel > 1 else [])
    env = {**os.environ, **THREADS, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"backfill (parallel {parallel}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds, _children_cpu() - cpu_before


def _children_cpu() -> float:
    """CPU seconds of the finished children (and the processes they waited for, the spawned workers)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compare(seq_results: Path, par_results: Path) -> dict[str, Any]:
    """Every published row and ledger count of the two results files; raises SystemExit if they differ."""
    import duckdb
    import numpy as np

    def read(path: Path) -> tuple[Any, Any]:
        with duckdb.connect(str(path), read_only=True) as con:
            preds = con.sql("SELECT day, source_key, score, label, model_version FROM predictions "
                            "ORDER BY day, source_key").to_df()
            runs = con.sql("SELECT day, status, trigger, rows_in, rows_scored, rows_rejected FROM runs "
                           "ORDER BY day").to_df()
        return preds, runs

    (sp, sr), (pp, pr) = read(seq_results), read(par_results)
    same_rows = sp[["day", "source_key", "label", "model_version"]].equals(pp[["day", "source_key", "label",
                                                                             "model_version"]])
    max_diff = float(np.max(np.abs(sp["score"].to_numpy() - pp["score"].to_numpy()))) if same_rows else float("inf")
    if not same_rows or max_diff > 1e-12 or not sr.equals(pr):
        raise SystemExit(f"outputs differ: rows equal {same_rows}, max |score diff| {max_diff}, ledgers equal "
                         f"{sr.equals(pr)}")
    if not (sr["rows_in"] == sr["rows_scored"] + sr["rows_rejected"]).all() or set(sr["status"]) != {"success"}:
        raise SystemExit("a backfill day did not succeed or its counts do not add up")
    return {"rows": len(pp), "max_abs_score_diff": max_diff, "ledger_rows": len(pr)}


def measure(rows_per_day: int = 100_000, days: int = 10, repeat: int = 3) -> dict[str, Any]:
    """Time the sequential and ``--parallel 2`` backfills of the same ``days`` days, interleaved.

    Returns:
        ``sequential_s`` and ``parallel_s`` (lists, seconds per round), their medians ``sequential_median_s``
        and ``parallel_median_s``, ``speedup`` (sequential / parallel medians), ``rows`` (total scored rows),
        ``max_abs_score_diff`` between the two outputs (checked <= 1e-12), ``sequential_cpu_s`` and
        ``parallel_cpu_s`` (median CPU seconds, workers included), ``cpus`` and ``load_avg``.
    """
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        folder = Path(tmp)
        cfg_path = build(folder, rows_per_day, days)
        seq_s: list[float] = []
        par_s: list[float] = []
        cpu: dict[str, list[float]] = {"sequential": [], "parallel": []}
        checked: dict[str, Any] = {}
        for i in range(repeat):  # interleaved, first one then the other, so drift in machine load hits both alike
            seq_cfg = contender_config(cfg_path, folder / f"seq-{i}")
            par_cfg = contender_config(cfg_path, folder / f"par-{i}")
            for name in (("parallel", "sequential") if i % 2 else ("sequential", "parallel")):
                wall, used = run_backfill(seq_cfg if name == "sequential" else par_cfg, days,
                                          1 if name == "sequential" else 2)
                (seq_s if name == "sequential" else par_s).append(wall)
                cpu[name].append(used)
            if i == 0:
                checked = compare(seq_cfg.parent / "results.duckdb", par_cfg.parent / "results.duckdb")
            print(f"round {i + 1}/{repeat}: sequential {seq_s[-1]:.2f}s ({cpu['sequential'][-1]:.1f} CPU s), "
                  f"parallel-2 {par_s[-1]:.2f}s ({cpu['parallel'][-1]:.1f} CPU s), load average "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
    seq, par = statistics.median(seq_s), statistics.median(par_s)
    return {"rows_per_day": rows_per_day, "days": days, "repeat": repeat, "sequential_s": seq_s,
            "parallel_s": par_s, "sequential_median_s": seq, "parallel_median_s": par, "speedup": seq / par,
            "sequential_cpu_s": statistics.median(cpu["sequential"]), "parallel_cpu_s": statistics.median(cpu["parallel"]),
            "cpus": os.cpu_count(), "load_avg": os.getloadavg(), **checked}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.days}-day backfill, {args.rows_per_day:,} rows a day, {os.cpu_count()} CPUs, threads pinned to 1 "
          f"per process, load average before {os.getloadavg()[0]:.2f}")
    fig = measure(args.rows_per_day, args.days, args.repeat)
    rows = fig["rows"]
    print(f"\n{'contender':<32}{'median s':>10}{'rows/s':>12}{'s per day':>11}{'CPU s':>8}{'cores used':>12}")
    for label, key in (("sequential", "sequential"), ("--parallel 2", "parallel")):
        wall, used = fig[f"{key}_median_s"], fig[f"{key}_cpu_s"]
        print(f"{label:<32}{wall:>10.2f}{rows / wall:>12,.0f}{wall / args.days:>11.2f}{used:>8.1f}{used / wall:>12.2f}")
    print(f"\nspeedup sequential / --parallel 2: {fig['speedup']:.2f}x   [>= {TARGET}]")
    print(f"outputs identical: {rows:,} rows, max |score diff| {fig['max_abs_score_diff']:.1e}, "
          f"{fig['ledger_rows']} ledger rows with equal counts; load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
