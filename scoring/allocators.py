"""Allocator settings that give a scoring process's freed chunk memory back to the operating system.

A run allocates and frees the same few large buffers once per chunk (Arrow batches, the model's input frame,
predictions). Arrow's default pool in the pyarrow wheels (mimalloc) and glibc's dynamic mmap threshold both keep
freed pages for reuse, so a process's peak RSS grows past its working set. With Arrow on the system allocator
and glibc's mmap threshold fixed, ``scoring run`` of a 40,000-row day at a 32 MiB budget peaked 30-40 MiB lower
and a 2,000,000-row day at 256 MiB about 40 MiB lower, at the same wall time (``/usr/bin/time`` of the settings
side by side, 3 rounds; ``benchmarks/bench_core.py`` prints the run's peak RSS).

Ground floor: imports nothing of the package and nothing heavy (``prefer_system_arrow_pool`` must run before
pyarrow is imported).
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)

ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"
# glibc <malloc.h>: mallopt(M_MMAP_THRESHOLD, bytes). Setting it also turns off the dynamic threshold, which
# otherwise rises to the size of the largest freed block (up to 32 MiB) and keeps such blocks on the heap.
M_MMAP_THRESHOLD = -3
# 4 MiB: a run's big buffers (a chunk's columns and its encoded matrix) are mmapped and given back on free;
# smaller ones stay on the heap. glibc's starting value, 128 KiB, cut peak RSS a further 50 MiB on a 2M-row day
# but cost 2 s of page faults (kernel CPU) over it; 4 MiB cost none measurable.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_threshold_set = False


def prefer_system_arrow_pool() -> None:
    """Make the system allocator Arrow's default memory pool, unless ``ARROW_DEFAULT_MEMORY_POOL`` is set.

    Arrow's C++ library reads the variable once, when pyarrow is first imported, so this only takes effect
    when called before that (the ``scoring`` command and the DAG file call it first thing); later it changes
    nothing. ``pyarrow.set_memory_pool`` is no substitute: it reaches only allocations made through the Python
    bindings, not those of Arrow's own kernels and Parquet readers and writers.
    """
    os.environ.setdefault(ARROW_POOL_ENV, "system")


def fix_mmap_threshold() -> None:
    """Fix glibc's mmap threshold at 4 MiB, once per process, so large freed blocks go back to the system.

    Leaves it alone when ``MALLOC_MMAP_THRESHOLD_`` is set (glibc then already fixed it) or when the C library
    has no ``mallopt`` (musl, macOS). Never raises: this is tuning, not correctness.
    """
    global _threshold_set
    if _threshold_set or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    _threshold_set = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        logger.debug("no mallopt in this C library; glibc's mmap threshold left as it is")
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        logger.debug("mallopt(M_MMAP_THRESHOLD) refused; glibc's mmap threshold left as it is")
