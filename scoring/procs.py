"""Worker processes that die with their parent: a SIGKILLed backfill or run leaves no worker scoring on.

Linux's ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (man 2 prctl) makes the kernel kill the worker when the process
that started it exits, however it exits; Python's ``ProcessPoolExecutor`` has no such option (its workers
notice a dead parent only when they next read their queue, which can take minutes mid-chunk). Elsewhere
(macOS) a watchdog thread polls the parent's pid once a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Call first thing in a worker process (a pool ``initializer``): the worker is killed with its parent."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the call took effect
                    os.kill(os.getpid(), signal.SIGKILL)
                return
        except OSError:
            logger.debug("prctl unavailable; watching the parent instead")

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="scoring-parent-watch", daemon=True).start()
