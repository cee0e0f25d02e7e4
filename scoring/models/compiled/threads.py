"""Threads sized to the cores this process may really use, for the native and the compiled engine alike.

``os.cpu_count()`` is the machine's; a process may be pinned to fewer cores (``sched_getaffinity``), capped
by a cgroup CPU quota (``cpu.max``: a container, a systemd slice) and share them with the other workers of
its own run or Celery worker. Over-subscribed OpenMP threads on a busy machine cost more than they gain.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cores(path: Path = CGROUP_CPU_MAX) -> int | None:
    """Cores allowed by a cgroup v2 quota (``"quota period"``, rounded up), None when unlimited or unknown."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: the affinity mask, capped by the cgroup quota and by an explicit
    ``OMP_NUM_THREADS`` (the operator's cap; TL2cgen refuses more threads than OpenMP allows) (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    caps = [cores, cgroup_cores() or cores]
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        caps.append(int(omp))
    return max(1, min(caps))


def threads_per_worker(workers: int = 1) -> int:
    """Threads for one of ``workers`` processes sharing this process's cores (at least 1)."""
    return max(1, usable_cores() // max(1, workers))


def limit_threads(threads: int) -> int:
    """Cap the OpenMP/BLAS thread pools of this process (scikit-learn's HGB predict among them).

    Applied process-wide through threadpoolctl (not a context manager: the cap stays for the process).
    Returns the cap.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=max(1, threads))
    logger.debug("thread pools capped at %s", threads)
    return threads
