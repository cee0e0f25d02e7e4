"""Scale-out benchmark (issues 15 and 30): both scale-out paths measured in one run, printed side by side.

1. One fixed day scored by the scoring DAG on 1 Celery worker vs 2 (``bench_celery_workers.measure``), for each
   ``--chunks`` count; with ``--pg`` the day is a PostgreSQL table and the results go to PostgreSQL. Per chunk
   count: the chunk task's preparation time (flat in the number of chunks when a chunk task reads only its key
   range), the serial part of the run (plan, validate, publish, record_ledger, scheduler hand-offs) as a share of
   the 1-worker wall time, and the speed-up the 1-worker task timings project for 8 workers.
2. A backfill of ``--days`` days, sequential vs ``scoring backfill --parallel 2``
   (``bench_backfill_parallel.measure``; ``--days 0`` leaves it out).

Threads are pinned to 1 per worker process on both sides, so the comparison is honest on 2 cores. Each part
checks its outputs identical (same keys, same scores) and the run fails when they are not. Targets: >= 1.6x
throughput from 2 workers and from ``--parallel 2``; serial share of the 1-worker day <= 10%.

    .venv/bin/python benchmarks/bench_scale_out.py [--rows 1000000] [--chunks 8 32] [--pg postgresql://...]
        [--rows-per-day 100000] [--days 10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_backfill_parallel  # noqa: E402
import bench_celery_workers  # noqa: E402

TARGET = 1.6
SERIAL_TARGET = 0.10


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the Celery day")
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--pg", default=None, help="PostgreSQL URL: the Celery day's source and results there")
    parser.add_argument("--rows-per-day", type=int, default=100_000, help="rows of each backfill day")
    parser.add_argument("--days", type=int, default=10, help="backfill days (0: no backfill part)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the Celery figures here")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average before (1/5/15 min) {_load()}", flush=True)
    celery = bench_celery_workers.measure(args.rows, args.repeat, args.chunks, pg_url=args.pg)
    print(f"load average after the Celery part {_load()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(celery, default=str, indent=1))
    bench_celery_workers.report(celery)
    backfill = bench_backfill_parallel.measure(args.rows_per_day, args.days, args.repeat) if args.days else None

    print(f"\n{'':48}{'1 process':>10}{'2 processes':>12}{'speed-up':>9}  target")
    for count, part in celery["by_chunks"].items():
        one, two = part["1"], part["2"]
        print(f"{f'Celery: {args.rows:,}-row day, {count} chunks, wall (s)':48}{one['wall_s']:>10.1f}"
              f"{two['wall_s']:>12.1f}{part['ratio_wall']:>8.2f}x  >= {TARGET}")
    if backfill:
        print(f"{f'backfill: {args.days} x {args.rows_per_day:,} rows, wall (s)':48}"
              f"{backfill['sequential_median_s']:>10.1f}{backfill['parallel_median_s']:>12.1f}"
              f"{backfill['speedup']:>8.2f}x  >= {TARGET}")
    print(f"\n{'chunks':>6}{'prepare/task (s)':>18}{'task (s)':>10}{'serial (s)':>12}{'1-worker wall':>15}"
          f"{'serial share':>14}{'8 workers':>11}  (serial target <= {SERIAL_TARGET:.0%})")
    for count, part in celery["by_chunks"].items():
        one, proj = part["1"], part["projected"]
        print(f"{count:>6}{one['prepare_s']:>18.2f}{one['chunk_task_s']:>10.1f}{one['serial_s']:>12.1f}"
              f"{one['wall_s']:>15.1f}{part['serial_share_1']:>14.1%}{proj[1] / proj[8]:>10.2f}x")
    print(f"outputs identical: Celery {celery['identical']}"
          + (f"; backfill max |score diff| {backfill['max_abs_score_diff']:.1e} over {backfill['rows']:,} rows"
             if backfill else "")
          + f"; medians of {args.repeat} round(s); load average after (1/5/15 min) {_load()}")
    if not celery["identical"] or (backfill and backfill["max_abs_score_diff"] > 1e-12):
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
