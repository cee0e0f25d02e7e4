"""The control of ``bench_engine.py``: a DAG of the scoring DAG's shape whose tasks do no work.

``plan`` (returns the list to map over, pushes the plan's dict under the XCom key ``plan``) -> ``score_chunk``
x N (mapped, N from ``$SCORING_SHAPE_CHUNKS``, default 4) -> ``publish`` -> ``record_ledger`` (trigger rule
``one_failed``: skipped on success), with the same XCom wiring as ``dags/scoring_dags.py``: the plan's dict goes
to every chunk task and to publish, the chunk summaries to publish. Run by ``dag.test()`` in the benchmark, it measures what Airflow itself costs around a day of that
shape (DAG parse, the in-process execution API, task starts, XCom), side by side with the real DAG. Lives
outside ``dags/`` so no deployment picks it up.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow.sdk import dag, task


@dag(dag_id="scoring_shape_noop", schedule=None, start_date=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), catchup=False,
     tags=["benchmark"])
def scoring_shape_noop() -> None:
    @task
    def plan(ti: Any = None) -> list[int]:
        chunks = int(os.environ.get("SCORING_SHAPE_CHUNKS", "4"))
        ti.xcom_push("plan", {"plan_id": "noop", "chunks": [{"index": i, "lo": i * 1000, "hi": (i + 1) * 1000,
                                                             "nulls": False} for i in range(chunks)]})
        return list(range(chunks))

    @task(map_index_template="{{ chunk_label }}")
    def score_chunk(planned: dict[str, Any], index: int) -> dict[str, Any]:
        from airflow.sdk import get_current_context

        get_current_context()["chunk_label"] = f"chunk {index + 1}/{len(planned['chunks'])}"  # type: ignore[typeddict-unknown-key]
        return {"index": index, "rows_in": 0, "parts": 1, "reused": False}

    @task
    def publish(planned: dict[str, Any], chunks: list[dict[str, Any]]) -> dict[str, Any]:
        return {"chunks": len(list(chunks[:])), "plan_id": planned["plan_id"]}

    @task(trigger_rule="one_failed", retries=0)
    def record_ledger(ti: Any = None) -> dict[str, Any]:
        return {"status": "failed", "plan": bool(ti.xcom_pull(task_ids="plan", key="plan"))}

    fanout = plan()
    planned = fanout["plan"]
    chunks = score_chunk.partial(planned=planned).expand(index=fanout)
    publish(planned, chunks) >> record_ledger()


scoring_shape_noop()
