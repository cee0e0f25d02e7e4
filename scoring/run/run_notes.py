"""The note of a scoring DAG run in the Airflow UI: the business day it scores and what became of it.

A scheduled run's id carries Airflow's logical date, which is not the business day (``dates.day_of_run``), so
operators reading the grid could not tell which day a run scored. Each run's note says it, set through the
Airflow REST API (``airflow_api``: ``SCORING_AIRFLOW_URL`` and a token or username/password in the workers'
environment; nothing is done without them):

- after ``plan``: ``Business day 2026-03-07 (Europe/Paris): loan_default v3, 1,000,000 rows in 8 chunk(s)``
- after ``publish``: ``Business day 2026-03-07 (Europe/Paris): loan_default v3 published 999,972 scored,
  28 quarantined (run loan_default-20260307-...)``
- after ``record_ledger`` (a task failed): ``Business day 2026-03-07 (Europe/Paris): failed (publish); ledger
  run ...``

A note a person wrote (one that does not start with ``Business day``) is left as it is. Best effort: a note
that cannot be made or set is a warning in the task log, never a failed task. A note takes up to three API calls
(token, read, write), each socket operation bounded by ``NOTE_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

PREFIX = "Business day"
NOTE_TIMEOUT_S = 5.0  # per socket operation: a note must not hold the plan's serial path or the publish pool slot


def planned_note(planned: dict[str, Any], timezone: str) -> str:
    """The note after ``plan``, from the plan's JSON (``RunPlan.to_json``)."""
    model = planned.get("model") or {}
    chunks = len(planned.get("chunks") or [])
    rows = planned.get("rows")
    size = f", {rows:,} rows in {chunks} chunk(s)" if isinstance(rows, int) else f", {chunks} chunk(s)"
    return f"{PREFIX} {planned.get('day')} ({timezone}): {model.get('name')} v{model.get('version')}{size}"


def published_note(counts: dict[str, Any], timezone: str) -> str:
    """The note after ``publish``, from its counts (``plan.publish_plan``'s return value)."""
    head = f"{PREFIX} {counts.get('day')} ({timezone}): {counts.get('model_name')} v{counts.get('model_version')}"
    if counts.get("status") == "superseded":
        return f"{head} not published: {counts.get('note') or 'a newer run of the day published'}"
    return (f"{head} published {counts.get('rows_scored') or 0:,} scored, {counts.get('rows_rejected') or 0:,} "
            f"quarantined (run {counts.get('run_id')})")


def failed_note(day: str, timezone: str, outcome: dict[str, Any]) -> str:
    """The note after ``record_ledger`` found a failed task (``plan.record_outcome``'s return value)."""
    failed = ", ".join(outcome.get("failed") or []) or "see the task logs"
    run = f"; ledger run {outcome['run_id']}" if outcome.get("run_id") else ""
    return f"{PREFIX} {day} ({timezone}): failed ({failed}){run}"


def note_run(dag_id: str, run_id: str, note: str | Callable[[], str]) -> bool:
    """Set the note of DAG run ``run_id`` of ``dag_id`` unless a person wrote it; True when it was set.

    Args:
        dag_id, run_id: the DAG run.
        note: the text, or a function making it (called only when the API is configured, inside the guard).

    Nothing is done (False, ``note`` not called) when ``SCORING_AIRFLOW_URL`` is not set. Never raises: a note
    that cannot be made, an API that cannot be reached (each socket operation waits at most ``NOTE_TIMEOUT_S``)
    or refuses the call is logged as a warning."""
    from scoring.run.airflow_api import AirflowApi

    try:
        api = AirflowApi.from_env()
        if api is None:
            return False
        api.dag_id, api.timeout_s = dag_id, NOTE_TIMEOUT_S
        text = note() if callable(note) else note
        current = api.run_note(run_id)
        if current and not current.startswith(PREFIX):
            logger.info("run %s keeps the note a person wrote: %r", run_id, current[:80])
            return False
        api.set_run_note(run_id, text)
        return True
    except Exception as exc:  # noqa: BLE001 - a note is a courtesy; the run's outcome is the ledger's
        logger.warning("could not set the note of run %s (%s): %s", run_id, dag_id,
                       (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        return False
