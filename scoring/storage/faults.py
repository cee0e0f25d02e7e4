"""Deterministic fault injection for the crash tests: ``SCORING_FAULT=<stage>`` SIGKILLs the process there.

Stages the product passes (CLI and DAG paths): ``after_ledger_insert``, ``mid_extract`` (after the first
source batch, before the second), ``after_chunk_<k>`` (chunk k staged), ``before_publish`` (checks done,
before the publish transaction), ``before_commit`` (inside it), ``after_commit`` (before staging cleanup and
the reader export); ``backfill_day_<YYYY-MM-DD>`` (a parallel backfill's worker, before it stages that
day). ``SCORING_FAULT=<stage>=wait:<path>`` instead creates ``<path>.reached`` and blocks until
``<path>`` exists (at most ``SCORING_FAULT_WAIT_S``, default 60 s): the concurrency tests order two real
processes with it, without sleeps. ``SCORING_FAULT=<stage>=raise`` raises ``FaultInjected`` there (a failed
step the process survives, as under ``dag.test()``); ``publish_start`` is the first step of a DAG's publish
task, before it writes anything. Unset, a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from scoring.errors import ScoringError

logger = logging.getLogger(__name__)

FAULT_ENV = "SCORING_FAULT"


class FaultInjected(ScoringError):
    """Raised at a fault point by ``SCORING_FAULT=<stage>=raise``."""


STAGES = ("after_ledger_insert", "mid_extract", "after_chunk_0", "after_chunk_1", "before_publish",
          "before_commit", "after_commit")


def fault_point(stage: str) -> None:
    """Kill this process with SIGKILL (or wait for a file) when ``$SCORING_FAULT`` names ``stage``."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, action = spec.partition("=")
    if name != stage:
        return
    if action == "raise":
        raise FaultInjected(f"fault injection: failed at {stage}")
    if action.startswith("wait:"):
        gate = Path(action[len("wait:"):])
        Path(f"{gate}.reached").touch()
        deadline = time.monotonic() + float(os.environ.get("SCORING_FAULT_WAIT_S", "60"))
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    logger.warning("fault injection: SIGKILL at %s", stage)
    os.kill(os.getpid(), signal.SIGKILL)
