"""The task functions of the Airflow DAGs (``dags/scoring_dags.py`` imports this module only; one call per task).

Each function forwards to the engine (``plan``: the daily run's steps; ``late``: late-data re-scoring;
``jobs``: on-demand jobs under Airflow) or to the report wing, looking the target up when called, so the DAG
file stays cheap to parse and a test may replace an engine step. Errors are the engine's: ``is_transient``
tells the DAG which ones a retry may fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from scoring.config import Config
from scoring.dates import DataInterval


def is_transient(exc: BaseException) -> bool:
    """Whether an Airflow retry may help (``plan.is_transient``)."""
    from scoring.run import plan

    return plan.is_transient(exc)


def plan_run(cfg: Config, interval: DataInterval, *, explicit_day: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Task ``plan``: the run plan of one business day (``plan.plan_run``); a day not ended yet, or one before
    ``schedule.start_date`` that was not asked for by the ``day`` param (``explicit_day``), is refused
    (``dates.check_schedule_day``, ConfigError). Returns the plan's JSON for the XCom (``RunPlan.to_json``;
    the next tasks read it back with ``RunPlan.from_json``)."""
    from scoring.dates import check_schedule_day
    from scoring.run import plan

    check_schedule_day(interval.day, cfg.schedule.start_date, cfg.timezone, explicit=explicit_day)
    return plan.plan_run(cfg, interval, **kwargs).to_json()


def plan_and_validate(cfg: Config, interval: DataInterval, on_plan: Callable[[dict[str, Any]], None], *,
                      explicit_day: bool = False, airflow_run: tuple[str, str] | None = None,
                      **kwargs: Any) -> list[Any]:
    """Task ``plan``: the run plan of one business day (``plan_run``, same refusals), handed to ``on_plan`` as
    its JSON as soon as it is made (the DAG pushes it to the XCom), then the checks every chunk relies on
    (``plan.validate_plan``: source schema vs the model, the artifact verifies and loads; ScoringError when
    not). One task instead of two: a task start and a scheduler hand-off fewer on the day's serial path.
    ``airflow_run`` (dag id, run id): the run whose note names the business day (``run_notes``).

    Returns:
        The chunks to fan out: the champion's indexes, then ``{"challenger": version, "index": i}`` each.
    """
    from scoring.run import plan, run_notes

    planned = plan_run(cfg, interval, explicit_day=explicit_day, **kwargs)
    on_plan(planned)
    if airflow_run is not None:
        run_notes.note_run(*airflow_run, lambda: run_notes.planned_note(planned, cfg.timezone))
    return plan.validate_plan(cfg, planned)


def chunk_label(planned: dict[str, Any], index: Any) -> str:
    """The label of a ``score_chunk`` task in the Airflow UI (its ``map_index_template``):
    ``2026-03-07 chunk 3/8 keys (1199, 1799]`` (the key range as the plan holds it: above the first bound, up
    to the second; ``-inf``/``+inf`` at the open ends), with ``challenger v2`` for a challenger's chunk."""
    if isinstance(index, dict):
        prefix, i = f"challenger v{index['challenger']} ", int(index["index"])
    else:
        prefix, i = "", int(index)
    chunks = planned.get("chunks") or []
    chunk = chunks[i] if 0 <= i < len(chunks) else {}
    lo, hi = chunk.get("lo"), chunk.get("hi")
    keys = f" keys ({'-inf' if lo is None else lo}, {'+inf' if hi is None else hi}]" if chunks else ""
    return f"{planned.get('day')} {prefix}chunk {i + 1}/{len(chunks)}{keys}"


def validate_plan(cfg: Config, planned: dict[str, Any]) -> list[Any]:
    """The chunks to fan out after the checks of task ``plan`` (``plan.validate_plan``), for a caller that
    planned with ``plan_run`` and runs the steps itself in one process (tests, ``bench_serial_steps``); the
    DAG runs the same checks inside task ``plan`` (``plan_and_validate``)."""
    from scoring.run import plan

    return plan.validate_plan(cfg, planned)


def score_chunk(cfg: Config, planned: dict[str, Any], index: Any) -> dict[str, Any]:
    """Task ``score_chunk`` (mapped): stage one chunk's key range (``plan.score_planned_chunk``)."""
    from scoring.run import plan

    return plan.score_planned_chunk(cfg, planned, index)


def publish(cfg: Config, planned: dict[str, Any], chunks: list[dict[str, Any]], *,
            airflow_run: tuple[str, str] | None = None) -> dict[str, Any]:
    """Task ``publish``: one transaction for the day (``plan.publish_plan``); then the run's note says what was
    published (``run_notes``, with ``airflow_run`` = (dag id, run id))."""
    from scoring.run import plan, run_notes

    counts = plan.publish_plan(cfg, planned, chunks)
    if airflow_run is not None:
        run_notes.note_run(*airflow_run, lambda: run_notes.published_note(counts, cfg.timezone))
    return counts


def record_outcome(cfg: Config, interval: DataInterval, planned: dict[str, Any] | None,
                   states: dict[str, str], details: dict[str, Any], *,
                   airflow_run: tuple[str, str] | None = None) -> dict[str, Any]:
    """Task ``record_ledger`` (runs when a task failed): the ledger's outcome (``plan.record_outcome``); a
    failed run's note names the failed tasks and its ledger row (``run_notes``)."""
    from scoring.run import plan, run_notes

    outcome = plan.record_outcome(cfg, interval, planned, states, details)
    if airflow_run is not None and outcome["status"] != "success":
        run_notes.note_run(*airflow_run,
                           lambda: run_notes.failed_note(interval.day.isoformat(), cfg.timezone, outcome))
    return outcome


def recheck_late_data(cfg: Config, day: str) -> list[dict[str, Any]]:
    """Task ``recheck_late_data``: re-score earlier days whose rows changed (``late.rescore_late_days``);
    one dict per day: ``day``, ``rows_before``, ``rows_now``, ``run_id``, ``error``."""
    from scoring.run import late

    done = late.rescore_late_days(cfg, dt.date.fromisoformat(day))
    return [{"day": str(d.day), "rows_before": d.rows_before, "rows_now": d.rows_now,
             "run_id": d.result.run_id if d.result else None, "error": d.error} for d in done]


def refresh_reports(cfg: Config) -> dict[str, Any]:
    """Task ``refresh_reports`` of the report DAG (``reports.refresh_reports``)."""
    from scoring import reports

    return reports.refresh_reports(cfg)


def recompute_outcomes(cfg: Config) -> dict[str, Any]:
    """Task ``outcomes`` of the report DAG: the recent days' outcome metrics (``outcomes.recompute_recent``)."""
    from scoring.run import outcomes

    return outcomes.recompute_recent(cfg)


def docs_rows(cfg: Config, run_ids: list[str] | None) -> list[dict[str, Any]]:
    """Task ``data_docs_runs``: the ledger rows to render (``quality.data_docs.docs_rows``)."""
    from scoring.quality import data_docs

    return data_docs.docs_rows(cfg, run_ids=run_ids)


def render_docs(cfg: Config, rows: list[dict[str, Any]]) -> list[str]:
    """Task ``build_data_docs``: render Data Docs pages (``quality.data_docs.render_docs``)."""
    from scoring.quality import data_docs

    return data_docs.render_docs(cfg, rows)


def stage_job(cfg: Config, job_id: str) -> dict[str, Any]:
    """Task ``score_job`` of the jobs DAG (``job_runs.airflow_stage``)."""
    from scoring.run import job_runs

    return job_runs.airflow_stage(cfg, job_id)


def publish_job(cfg: Config, job_id: str) -> dict[str, Any]:
    """Task ``publish_job`` (``job_runs.airflow_publish``)."""
    from scoring.run import job_runs

    return job_runs.airflow_publish(cfg, job_id)


def record_job(cfg: Config, job_id: str, failed_tasks: list[str]) -> dict[str, Any]:
    """Task ``record_job`` (``job_runs.airflow_record``)."""
    from scoring.run import job_runs

    return job_runs.airflow_record(cfg, job_id, failed_tasks)
