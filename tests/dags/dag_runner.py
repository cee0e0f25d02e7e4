"""Run the scoring DAG with ``dag.test()`` for some days, in a process whose environment names the Airflow home,
the dags folder and the scoring configs (the tests start it as a subprocess so no setting leaks).

    python -m tests.dags.dag_runner --dag-id scoring_loan_default --day 2026-03-07 [--day ...] [--conf JSON]

Prints one JSON line per day: the day, the dag run's state, its data interval, the seconds it took, the
state, tries and seconds (``duration``) of each task instance, and ``own``: the seconds spent inside the
engine's task functions (``scoring.run.tasks``: what each task body calls), summed per function, so a benchmark
can tell the engine's work from Airflow's around it (a task instance's ``duration`` also holds Airflow's start of
the task: the first one's includes building ``dag.test()``'s in-process execution API). A manual run scores the business day its logical date names (README "What day
is scored"), so day D runs with logical date D (midnight UTC), as ``airflow dags test DAG D`` does.

    python -m tests.dags.dag_runner --dag-id scoring_loan_default --serve

serves several calls from one process (Airflow imported and the dags folder parsed once): each stdin line is a
JSON request ``{"days": [...], "conf": {...} | null, "env": {NAME: value | null}}`` (``env`` sets or unsets
variables of this process before the runs, e.g. ``SCORING_FAULT``, which the engine reads when it reaches a fault
point); each day's JSON line is printed after ``SERVE_RESULT``, then ``SERVE_DONE`` (both flushed, with stderr
flushed first); stdin's end stops the process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

SERVE_RESULT = "@@dag_runner result "
SERVE_DONE = "@@dag_runner done"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--day", action="append", default=[])
    parser.add_argument("--conf", default=None)
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args(argv)
    if not args.day and not args.serve:
        parser.error("--day (one or more) or --serve is required")
    logging.basicConfig(level=logging.WARNING)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    if bag.import_errors:
        print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
        return 2
    dag = bag.dags[args.dag_id]
    own = _time_engine_tasks()
    if args.serve:
        while request := sys.stdin.readline():
            if not request.strip():
                continue
            call = json.loads(request)
            for name, value in (call.get("env") or {}).items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _run_days(dag, call["days"], call.get("conf"), own, prefix=SERVE_RESULT)
            sys.stderr.flush()
            print(SERVE_DONE, flush=True)
        return 0
    _run_days(dag, args.day, json.loads(args.conf) if args.conf else None, own)
    return 0


def _run_days(dag: Any, days: list[str], conf: dict | None, own: dict[str, list[float]], prefix: str = "") -> None:
    """``dag.test()`` each day in turn; print one JSON line per day (after ``prefix``)."""
    for text in days:
        day = dt.date.fromisoformat(text)
        logical = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        started = time.perf_counter()
        # run_after fixed: the run id (hence the staging folder) is the same when a day is run again,
        # as when a run is cleared under the scheduler.
        dr = dag.test(logical_date=logical, run_after=logical, run_conf=conf)
        seconds = time.perf_counter() - started
        spent = {name: round(sum(times), 4) for name, times in own.items()}
        own.clear()
        tis = {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"): ti
               for ti in dr.get_task_instances()}
        print(prefix + json.dumps({"day": text, "state": str(dr.state), "run_id": dr.run_id, "seconds": round(seconds, 3),
                          "interval": [dr.data_interval_start.isoformat(), dr.data_interval_end.isoformat()],
                          "tasks": {k: str(ti.state) for k, ti in tis.items()},
                          "tries": {k: ti.try_number for k, ti in tis.items()},
                          "durations": {k: ti.duration for k, ti in tis.items()}, "own": spent}), flush=True)


def _time_engine_tasks() -> dict[str, list[float]]:
    """Wrap the functions of ``scoring.run.tasks`` (each DAG task body looks its function up when it runs) so
    each call's wall seconds are appended under its name; returns that dict. Nothing else changes."""
    from scoring.run import tasks

    own: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                own.setdefault(name, []).append(time.perf_counter() - started)
        return wrapper

    for name in ("plan_and_validate", "score_chunk", "publish", "record_outcome"):  # the task bodies
        setattr(tasks, name, timed(name, getattr(tasks, name)))
    return own


if __name__ == "__main__":
    sys.exit(main())
