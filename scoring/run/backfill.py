"""Backfill: each day of a range is its own run with its own ledger row.

Sequentially, each day is one ``run_day``. With ``parallel`` > 1 the days are scored ``parallel`` at a time in
worker processes (``concurrent.futures``, spawn) and published one at a time by this process, in day order:
a worker plans its day and stages every chunk (``plan.plan_run`` + ``plan.stage_plan``: key-range reads, no
write to the results database), then the parent publishes it (``plan.publish_plan``), so the results database
keeps a single writer. Each worker scores its chunks one after the other (``workers`` is not applied inside a
day: N days in flight already use N processes).
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from scoring.config import Config
from scoring.dates import DataInterval, day_range
from scoring.errors import ScoringError, first_line, one_line
from scoring.procs import die_with_parent
from scoring.run.model_choice import check_model_as_of, choose_model
from scoring.run.pipeline import RunResult, run_day
from scoring.run.runplan import RunPlan
from scoring.storage.faults import fault_point
from scoring.storage.object_options import connection_options, use_connection_options
from scoring.storage.results import ResultsStore, open_results

logger = logging.getLogger(__name__)

TRIGGER = "backfill"


@dataclass(frozen=True)
class DayOutcome:
    day: dt.date
    result: RunResult | None
    error: str | None


def backfill(cfg: Config, start: dt.date, end: dt.date, *, fail_fast: bool = False,
             on_day: Callable[[DayOutcome], None] | None = None, model_as_of: str = "now",
             parallel: int = 1, results: ResultsStore | None = None, **run_kwargs: Any) -> list[DayOutcome]:
    """Score each business day from ``start`` to ``end`` inclusive; outcomes (and ``on_day``) in day order.

    A failed day is recorded and the next one runs, unless ``fail_fast``. ``model_as_of`` is ``now`` (every
    day with the alias's target when the backfill started, resolved once: ``resolve_once``) or ``day`` (each day with the version the alias pointed at on that
    day); a conflicting pin raises ConfigError before any day runs. Late data is not rechecked: a backfill
    re-scores its days anyway. ``parallel`` > 1 scores that many days at a time in worker processes and
    publishes them one at a time (see the module docstring); ``run_kwargs`` are ``version`` and
    ``rows_per_chunk``. ``results``: the open results store every day publishes into (default: the
    configured one, opened once here for the whole range; the workers of a parallel backfill write none).
    """
    check_model_as_of(cfg, run_kwargs.get("version"), model_as_of)
    days = day_range(start, end)
    results = results if results is not None else open_results(cfg.results)
    if days and model_as_of == "now":
        run_kwargs = {**run_kwargs, **resolve_once(cfg, days[0], run_kwargs.get("version"))}
    if parallel > 1 and len(days) > 1:
        return _parallel(cfg, days, parallel, fail_fast, on_day, model_as_of, results, **run_kwargs)
    outcomes: list[DayOutcome] = []
    for day in days:
        try:
            outcome = DayOutcome(day, run_day(cfg, day, trigger=TRIGGER, model_as_of=model_as_of, results=results,
                                                **run_kwargs),
                                 None)
        except ScoringError as exc:
            outcome = DayOutcome(day, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad day must not stop the backfill
            logger.exception("day %s failed", day)
            outcome = DayOutcome(day, None, f"{type(exc).__name__}: {exc}")
        outcomes.append(outcome)
        if on_day:
            on_day(outcome)
        if outcome.error and fail_fast:
            break
    return outcomes


def resolve_once(cfg: Config, first: dt.date, version: int | None) -> dict[str, Any]:
    """The model version of a whole ``--model-as-of now`` backfill, chosen once when it starts: the run
    arguments (``version`` and ledger ``details`` naming the rule and when it was applied) so that a promotion
    during the backfill does not split the range. An unknown model is left to each day to report (empty)."""
    try:
        mv, rule = choose_model(cfg, DataInterval.for_day(first, cfg.timezone), version, "now")
    except ScoringError:
        return {}
    when = dt.datetime.now(dt.UTC).isoformat()
    logger.info("backfill scores every day with %s v%s (%s, resolved at %s)", mv.name, mv.version,
                rule["model_rule"], when)
    return {"version": mv.version, "details": {**rule, "model_resolved_at": when, "model_resolved_by": "backfill"}}


def stage_day(cfg: Config, day: dt.date, model_as_of: str = "now", version: int | None = None,
              rows_per_chunk: int | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """In a worker process: plan ``day`` and stage all its chunks; never raises (a day's failure is data).

    Returns:
        ``plan``, ``chunks`` (manifests) and ``seconds`` on success; else ``error`` (one line), ``plan`` (None
        when planning failed), ``version`` (the model version, when it was chosen) and ``resumable`` (whether
        a rerun may reuse what was staged).
    """
    from scoring.run.pipeline import NOT_RESUMABLE
    from scoring.run.plan import plan_run, run_folder, stage_plan

    started = time.monotonic()
    interval = DataInterval.for_day(day, cfg.timezone)
    plan: RunPlan | None = None
    chosen: int | None = None
    try:
        chosen = choose_model(cfg, interval, version, model_as_of)[0].version
        plan = plan_run(cfg, interval, version, rows_per_chunk, key=TRIGGER, model_as_of=model_as_of,
                        details=details)
        fault_point(f"backfill_day_{day.isoformat()}")  # the crash tests kill one day's worker here
        chunks = stage_plan(cfg, plan)
    except Exception as exc:  # noqa: BLE001 - the parent records it; the other days go on
        if not isinstance(exc, ScoringError):
            logger.exception("day %s failed", day)
        resumable = not isinstance(exc, NOT_RESUMABLE)
        if plan is not None and not resumable:
            shutil.rmtree(run_folder(cfg, plan).root, ignore_errors=True)
        return {"day": day.isoformat(), "plan": plan, "version": chosen, "resumable": resumable,
                "error": str(exc) if isinstance(exc, ScoringError) else f"{type(exc).__name__}: {one_line(exc)}"}
    return {"day": day.isoformat(), "plan": plan, "chunks": chunks, "seconds": time.monotonic() - started}


def _init_day_worker(object_store: dict[str, str]) -> None:
    """A day's worker process: dies with this one; the parent's model store credentials (spawned: it has none)."""
    die_with_parent()
    use_connection_options(object_store)


def _parallel(cfg: Config, days: list[dt.date], parallel: int, fail_fast: bool,
              on_day: Callable[[DayOutcome], None] | None, model_as_of: str, results: ResultsStore,
              **run_kwargs: Any) -> list[DayOutcome]:
    """Stage up to ``parallel`` days at once in worker processes; publish them here, one at a time, in order.

    Each day has a worker process of its own (a one-worker ``ProcessPoolExecutor``): a worker that dies
    (killed, out of memory) breaks only its day's pool, so the other days go on and publish while the dead
    day is recorded ``failed`` with the cause. A slot frees as soon as a worker is done, not when its day is
    published.
    """
    outcomes: list[DayOutcome] = []
    # spawn, not fork: this process may hold DuckDB and OpenMP threads, which a forked child can deadlock on.
    context = multiprocessing.get_context("spawn")
    waiting = list(days)
    flight: dict[dt.date, tuple[ProcessPoolExecutor, Future[dict[str, Any]]]] = {}

    def fill() -> None:
        while waiting and sum(1 for _, f in flight.values() if not f.done()) < parallel:
            day = waiting.pop(0)
            pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_init_day_worker,
                                       initargs=(connection_options(),))
            flight[day] = (pool, pool.submit(stage_day, cfg, day, model_as_of, run_kwargs.get("version"),
                                             run_kwargs.get("rows_per_chunk"), run_kwargs.get("details")))

    try:
        for day in days:
            fill()
            pool, future = flight[day]
            while not future.done():
                wait([f for _, f in flight.values() if not f.done()], return_when=FIRST_COMPLETED)
                fill()
            flight.pop(day)
            try:
                staged = future.result()
            except BrokenProcessPool as exc:
                staged = {"error": f"the worker process scoring {day} died (killed or out of memory): {exc}",
                          "plan": None, "version": _day_version(cfg, day, model_as_of, run_kwargs),
                          "details": run_kwargs.get("details")}
            except Exception as exc:  # noqa: BLE001 - the day's result could not come back (pickling, ...)
                staged = {"error": f"the worker process scoring {day} failed: {type(exc).__name__}: {exc}",
                          "plan": None, "version": _day_version(cfg, day, model_as_of, run_kwargs),
                          "details": run_kwargs.get("details")}
            pool.shutdown(wait=True)
            outcome = _publish_day(cfg, day, staged, results)
            outcomes.append(outcome)
            if on_day:
                on_day(outcome)
            if outcome.error and fail_fast:
                break
    finally:
        for pool, _ in flight.values():
            pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


def _day_version(cfg: Config, day: dt.date, model_as_of: str, run_kwargs: dict[str, Any]) -> int | None:
    """The model version a day whose worker died was scored with (None when it cannot be chosen)."""
    if run_kwargs.get("version") is not None:
        return int(run_kwargs["version"])
    try:
        return choose_model(cfg, DataInterval.for_day(day, cfg.timezone), None, model_as_of)[0].version
    except ScoringError:
        return None


def _publish_day(cfg: Config, day: dt.date, staged: dict[str, Any], results: ResultsStore) -> DayOutcome:
    """Publish a staged day (``publish_plan``, trigger ``backfill``), or record the day's staging failure."""
    from scoring.run.plan import publish_plan

    if staged.get("error"):
        if staged.get("version") is not None:  # as a sequential run: a day whose model was chosen gets a row
            _record_failed_day(cfg, day, staged, results)
        return DayOutcome(day, None, staged["error"])
    started = time.monotonic()
    try:
        counts = publish_plan(cfg, staged["plan"], staged["chunks"], trigger=TRIGGER, results=results)
    except ScoringError as exc:
        return DayOutcome(day, None, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad day must not stop the backfill
        logger.exception("day %s failed", day)
        return DayOutcome(day, None, f"{type(exc).__name__}: {exc}")
    seconds = staged["seconds"] + time.monotonic() - started
    status = counts.get("status", "success")
    return DayOutcome(day, RunResult(
        counts["run_id"], day, counts["model_name"], counts["model_version"], counts["rows_in"],
        counts["rows_rejected"], counts["rows_scored"], seconds, _where(results), status=status,
        note=counts.get("note")), None)


def _record_failed_day(cfg: Config, day: dt.date, staged: dict[str, Any], results: ResultsStore) -> None:
    """A failed ledger row (trigger ``backfill``) for a day that failed in its worker, as ``run_day`` records one."""
    from scoring.run.pipeline import record_failure, start_record

    plan = staged.get("plan")
    started = plan.planned_at if plan else None
    details: dict[str, Any] = {**(plan.details if plan else staged.get("details") or {}),
                               **({"plan_id": plan.plan_id, "engine": dict(plan.engine)} if plan else {})}
    if not staged.get("resumable", True):
        details["staging"] = "removed"
    try:
        results.ensure_schema()
        run = start_record(results, cfg.model.name, day, staged["version"], TRIGGER, details, started)
        record_failure(results, run, ScoringError(staged["error"]))
    except Exception as exc:  # noqa: BLE001 - the day's own error is what the user must see
        logger.error("could not record the failure of %s in the ledger: %s", day, first_line(exc))


def _where(results: ResultsStore) -> str:
    from scoring.storage.pgconn import redact_url

    return redact_url(str(results.cfg.path or results.cfg.url))
