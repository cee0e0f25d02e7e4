"""The serial steps of a DAG run, timed in one process without Airflow: plan, validate, (the chunks, staged one
after the other: the parallel part), publish and record_ledger, on a PostgreSQL day (binary COPY into a
throwaway schema) with PostgreSQL results, exactly as the DAG's tasks call them (``scoring.run.tasks``).

Run it under a sampling profiler to see where the serial part goes:

    py-spy record --format raw -o serial.txt -- .venv/bin/python benchmarks/bench_serial_steps.py --rows 1000000
    .venv/bin/python benchmarks/bench_serial_steps.py --rows 1000000 [--chunks 8] [--repeat 2]

Prints seconds per step (medians of ``--repeat``) and the serial steps' share of the sum. The schema is
dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_celery_workers  # noqa: E402
from bench_postgres import drop_schemas  # noqa: E402

DEFAULT_URL = os.environ.get("SCORING_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def one_run(cfg_path: Path, rows: int, chunks: int, key: str) -> dict[str, float]:
    """Seconds of each step of one run of the benchmark day, as the DAG's tasks call them."""
    from scoring.config import load_config
    from scoring.dates import DataInterval
    from scoring.run import plan as engine
    from scoring.run import tasks

    cfg = load_config(cfg_path)
    interval = DataInterval.for_day(bench_celery_workers.DAY, cfg.timezone)
    out: dict[str, float] = {}
    clock = time.perf_counter()
    planned = tasks.plan_run(cfg, interval, rows_per_chunk=-(-rows // chunks), key=key)
    out["plan"] = time.perf_counter() - clock
    clock = time.perf_counter()
    indexes = tasks.validate_plan(cfg, planned)
    out["validate"] = time.perf_counter() - clock
    clock = time.perf_counter()
    manifests = [tasks.score_chunk(cfg, planned, i) for i in indexes]
    out["chunks (parallel part)"] = time.perf_counter() - clock
    out["prepare per chunk (median)"] = statistics.median(m["prepare_s"] for m in manifests)
    clock = time.perf_counter()
    counts = tasks.publish(cfg, planned, manifests)
    out["publish"] = time.perf_counter() - clock
    clock = time.perf_counter()
    tasks.record_outcome(cfg, interval, planned, {"plan": "success", "validate": "success", "publish": "success"},
                         {})
    out["record_ledger"] = time.perf_counter() - clock
    assert counts["rows_in"] == rows, counts
    engine.logger.info("run %s: %s", key, json.dumps({k: round(v, 2) for k, v in out.items()}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    schema = f"bench_serial_{uuid.uuid4().hex[:8]}"
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_serial_") as tmp:
        try:
            started = time.perf_counter()
            cfg_path = bench_celery_workers.build(Path(tmp), args.rows, (args.url, schema))
            print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
            runs = [one_run(cfg_path, args.rows, args.chunks, f"serial_{i}") for i in range(args.repeat)]
        finally:
            drop_schemas(args.url, schema)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    serial = sum(med[k] for k in ("plan", "validate", "publish", "record_ledger"))
    print(f"\n{args.rows:,} rows, {args.chunks} chunks, medians of {args.repeat}; load average "
          f"{os.getloadavg()[0]:.2f}")
    for key, value in med.items():
        print(f"  {key:28}{value:>8.2f} s")
    total = serial + med["chunks (parallel part)"]
    print(f"  serial steps {serial:.1f} s of {total:.1f} s ({serial / total:.1%}) in one process")


if __name__ == "__main__":
    main()
