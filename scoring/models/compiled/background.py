"""Compiling within a time budget, in the foreground or in the background.

A compile (lleaves took 191 s on a loaded machine for issue 26's LightGBM; TL2cgen 12 s for the sample HGB)
runs in a process of its own, so that a budget can stop it whatever it is doing (LLVM or gcc do not return
to Python until they finish): ``supervise`` starts that process and waits at most ``budget_s`` seconds; past
that it kills it (by its pid), removes its work folder and records ``status: not_compiled`` with the reason
(the budget), so runs keep the model's own predict. While a compile runs, the version's ``compiled`` entry
says ``status: compiling`` (with the supervisor's pid, the start and the budget), and runs score natively
saying so.

``start_background`` hands the whole of it to a detached supervisor process and returns at once
(``register --compile`` with ``scoring.compile_background``); ``scoring models compile`` waits for it.

Run as ``python -m scoring.models.compiled.background supervise|compile STORE NAME VERSION ROWS BUDGET``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from scoring.models.store import ModelStore, ModelVersion
from scoring.storage.results.liveness import pid_alive

logger = logging.getLogger(__name__)

ROWS_FILE = ".compile-rows.parquet"
LOG_FILE = "compile.log"


def _command(action: str, store: Path, mv: ModelVersion, rows: Path, budget_s: float) -> list[str]:
    return [sys.executable, "-m", "scoring.models.compiled.background", action, str(store), mv.name,
            str(mv.version), str(rows), str(budget_s)]


def _mark(store: ModelStore, mv: ModelVersion, budget_s: float, pid: int | None) -> None:
    store.update_meta(mv, "compiled", {"status": "compiling", "pid": pid, "budget_s": budget_s,
                                       "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})


def _write_rows(mv: ModelVersion, frame: pd.DataFrame) -> Path:
    rows = mv.path / ROWS_FILE
    frame.reset_index(drop=True).to_parquet(rows)
    return rows


def supervise(store_root: Path, name: str, version: int, rows: Path, budget_s: float) -> dict[str, Any]:
    """Compile ``name`` v``version`` on the rows in ``rows`` (Parquet) in a child process, at most
    ``budget_s`` seconds; returns the recorded ``compiled`` entry.

    The child is killed (by pid) when the budget is spent; its work folder is removed and the entry says so.
    """
    store = ModelStore(store_root)
    mv = store.get(name, version)
    _mark(store, mv, budget_s, os.getpid())
    with (mv.path / LOG_FILE).open("ab") as log:
        child = subprocess.Popen(_command("compile", store_root, mv, rows, budget_s), stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = child.wait(timeout=budget_s)
            why = None if code == 0 else f"the compile process failed (exit code {code}; see {LOG_FILE})"
        except subprocess.TimeoutExpired:
            try:  # the child and the compilers it started (gcc) form the group it leads
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
            why = f"compile budget of {budget_s:g} s spent (scoring.compile_budget_s); runs keep the model's own predict"
    for work in mv.path.glob(".compiling-*"):
        shutil.rmtree(work, ignore_errors=True)
    rows.unlink(missing_ok=True)
    entry = store.get(name, version).meta.get("compiled") or {}
    if why or entry.get("status") == "compiling":
        entry = {"status": "not_compiled", "reason": why or "the compile process recorded nothing"}
        logger.warning("%s v%s not compiled: %s", name, version, entry["reason"])
        store.update_meta(mv, "compiled", entry)
    return entry


def compile_within(store_root: Path, mv: ModelVersion, frame: pd.DataFrame, budget_s: float) -> dict[str, Any]:
    """``compile_version`` in a child process, waited for at most ``budget_s`` seconds; the recorded entry."""
    return supervise(store_root, mv.name, mv.version, _write_rows(mv, frame), budget_s)


def start_background(store_root: Path, mv: ModelVersion, frame: pd.DataFrame, budget_s: float) -> int:
    """Start a detached supervisor compiling ``mv`` within ``budget_s`` seconds; returns its pid at once.

    The version's ``compiled`` entry says ``compiling`` from now until the supervisor records the outcome.
    """
    rows = _write_rows(mv, frame)
    # Marked before the supervisor starts (it marks again with its pid): marking after it started could
    # overwrite an outcome it already recorded.
    _mark(ModelStore(store_root), mv, budget_s, None)
    with (mv.path / LOG_FILE).open("ab") as log:
        proc = subprocess.Popen(_command("supervise", store_root, mv, rows, budget_s), stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    logger.info("%s v%s compiling in the background (pid %s, budget %s s)", mv.name, mv.version, proc.pid,
                budget_s)
    return proc.pid


def in_progress(entry: dict[str, Any]) -> str:
    """What the ledger says while a compile runs (or ran and never recorded its outcome)."""
    started = entry.get("started_at", "?")
    budget = entry.get("budget_s", "?")
    try:
        if entry.get("pid") is None:  # the supervisor is starting: in time while within the budget
            since = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(started)
            alive = since.total_seconds() <= float(budget)
        else:
            alive = pid_alive(int(entry["pid"]))
    except (TypeError, ValueError):
        alive = False
    if alive:
        return f"compile in progress since {started} (budget {budget} s)"
    return f"a compile started at {started} ended without recording its outcome; run scoring models compile"


def _main(argv: list[str]) -> int:
    action, store_root, name, version, rows, budget = argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if action == "supervise":
        supervise(Path(store_root), name, int(version), Path(rows), float(budget))
        return 0
    from scoring.models.compiled.engine import compile_version

    store = ModelStore(Path(store_root))
    compile_version(store, store.get(name, int(version)), pd.read_parquet(rows))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
