"""Run the scoring DAG with ``dag.test()`` for some days, in a process whose environment names the Airflow home,
the dags folder and the scoring configs (the tests start it as a subprocess so no setting leaks).

    python -m tests.dags.dag_runner --dag-id scoring_loan_default --day 2026-03-07 [--day ...] [--conf JSON]

Prints one JSON line per day: the day, the dag run's state, its data interval, the seconds it took and the
state, tries and seconds (``duration``) of each task instance. A manual run scores the business day its logical date names (README "What day
is scored"), so day D runs with logical date D (midnight UTC), as ``airflow dags test DAG D`` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time


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
    conf = json.loads(args.conf) if args.conf else None
    for text in args.day:
        day = dt.date.fromisoformat(text)
        logical = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        started = time.perf_counter()
        # run_after fixed: the run id (hence the staging folder) is the same when a day is run again,
        # as when a run is cleared under the scheduler.
        dr = dag.test(logical_date=logical, run_after=logical, run_conf=conf)
        seconds = time.perf_counter() - started
        tis = {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"): ti
               for ti in dr.get_task_instances()}
        print(json.dumps({"day": text, "state": str(dr.state), "run_id": dr.run_id, "seconds": round(seconds, 3),
                          "interval": [dr.data_interval_start.isoformat(), dr.data_interval_end.isoformat()],
                          "tasks": {k: str(ti.state) for k, ti in tis.items()},
                          "tries": {k: ti.try_number for k, ti in tis.items()},
                          "durations": {k: ti.duration for k, ti in tis.items()}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
