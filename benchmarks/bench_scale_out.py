"""Scale-out benchmark (issue 15): both scale-out paths measured in one run, printed side by side.

1. One fixed day scored by the scoring DAG on 1 Celery worker vs 2 (``bench_celery_workers.measure``).
2. A backfill of ``--days`` days, sequential vs ``scoring backfill --parallel 2``
   (``bench_backfill_parallel.measure``).

Threads are pinned to 1 per worker process on both sides, so the comparison is honest on 2 cores. Each part
checks its outputs identical (same keys, same scores) and the run fails when they are not. Targets: >= 1.6x
throughput from 2 workers and from ``--parallel 2``.

    .venv/bin/python benchmarks/bench_scale_out.py [--rows 1000000] [--chunks 8] [--rows-per-day 100000]
        [--days 10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_backfill_parallel  # noqa: E402
import bench_celery_workers  # noqa: E402

TARGET = 1.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the Celery day")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--rows-per-day", type=int, default=100_000, help="rows of each backfill day")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}", flush=True)
    celery = bench_celery_workers.measure(args.rows, args.repeat, args.chunks)
    bench_celery_workers.report(celery)
    backfill = bench_backfill_parallel.measure(args.rows_per_day, args.days, args.repeat)

    one, two = celery["1"], celery["2"]
    print(f"\n{'':44}{'1 process':>12}{'2 processes':>13}{'speed-up':>10}  target")
    print(f"{f'Celery: {args.rows:,}-row day, DAG run wall (s)':44}{one['wall_s']:>12.1f}{two['wall_s']:>13.1f}"
          f"{celery['ratio_wall']:>9.2f}x  >= {TARGET}")
    print(f"{f'backfill: {args.days} x {args.rows_per_day:,} rows, wall (s)':44}"
          f"{backfill['sequential_median_s']:>12.1f}{backfill['parallel_median_s']:>13.1f}"
          f"{backfill['speedup']:>9.2f}x  >= {TARGET}")
    print(f"scheduler overhead per chunk task: idle slot {two['idle_slot_per_chunk_s']:.1f} s, queued -> start "
          f"{two['queued_to_start_s']:.1f} s (2 workers); score_chunk task {two['chunk_task_s']:.1f} s")
    print(f"outputs identical: Celery {celery['identical']}; backfill max |score diff| "
          f"{backfill['max_abs_score_diff']:.1e} over {backfill['rows']:,} rows; medians of {args.repeat} round(s); "
          f"load average after {os.getloadavg()[0]:.2f}")
    if not celery["identical"] or backfill["max_abs_score_diff"] > 1e-12:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
