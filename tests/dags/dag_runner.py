"""Run the scoring DAG with ``dag.test()`` for some days, in a process whose environment names the Airflow home,
the dags folder and the scoring configs (the tests start it as a subprocess so no setting leaks).

    python -m tests.dags.dag_runner --dag-id scoring_loan_default --day 2026-03-07 [--day ...] [--conf JSON]

Prints one JSON line per day: the day, the dag run's state, its data interval, the seconds it took, the
state, tries and seconds (``duration``) of each task instance, and ``own``: the seconds spent inside the
engine's task functions (``scoring.run.tasks``: what each task body calls), summed per function, so a benchmark
can tell the engine's work from Airflow's around it (a task instance's ``duration`` also holds Airflow's start of
the task: the first one's includes building ``dag.test()``'s in-process execution API). A manual run scores the business day its logical date names (README "What day
is scored"), so day D runs with logical date D (midnight UTC), as ``airflow dags test DAG D`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--day", action="append", required=True)
    parser.add_argument("--conf", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    if bag.import_errors:
        print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
        return 2
    dag = bag.dags[args.dag_id]
    own = _time_engine_tasks()
    conf = json.loads(args.conf) if args.conf else None
    for text in args.day:
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
        print(json.dumps({"day": text, "state": str(dr.state), "run_id": dr.run_id, "seconds": round(seconds, 3),
                          "interval": [dr.data_interval_start.isoformat(), dr.data_interval_end.isoformat()],
                          "tasks": {k: str(ti.state) for k, ti in tis.items()},
                          "tries": {k: ti.try_number for k, ti in tis.items()},
                          "durations": {k: ti.duration for k, ti in tis.items()}, "own": spent}), flush=True)
    return 0


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
