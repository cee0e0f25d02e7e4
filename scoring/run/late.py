"""Late-arriving rows: re-score recent business days whose source rows changed after they were scored.

With ``schedule.recheck_days: N`` each run of day D (``scoring run``, the DAG) also counts the source rows
of the business days D-N .. D-1 in one grouped query, compares each count with the ``rows_in`` of that day's
latest successful run in the ledger, and re-scores every day that differs as its own run (trigger
``late-data``) with the model version of the run it replaces, so a day's partition stays one model's
scores. Days without a successful run are left alone (they were never scored, or failed: not late data).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from scoring.config import Config
from scoring.dates import DataInterval
from scoring.errors import ScoringError
from scoring.run.pipeline import RunResult, run_interval
from scoring.storage.results import ResultsStore, open_results
from scoring.storage.sources import open_source

logger = logging.getLogger(__name__)

TRIGGER = "late-data"


@dataclass(frozen=True)
class LateDay:
    """A recent day whose source rows changed since its last successful run, and its re-score."""

    day: dt.date
    rows_before: int
    rows_now: int
    version: int
    result: RunResult | None = None
    error: str | None = None


def changed_days(cfg: Config, day: dt.date, recheck_days: int | None = None, *,
                 results: ResultsStore | None = None) -> list[LateDay]:
    """The business days before ``day`` (``recheck_days``, default ``schedule.recheck_days``) whose source
    row count differs from the ``rows_in`` of their latest successful run; oldest first, not re-scored.
    ``results``: the open results store whose ledger is read (default: the configured one)."""
    n = cfg.schedule.recheck_days if recheck_days is None else recheck_days
    if n <= 0:
        return []
    days = [day - dt.timedelta(days=i) for i in range(n, 0, -1)]
    with open_source(cfg.source) as source:
        counts = dict(zip(days, source.day_counts([DataInterval.for_day(d, cfg.timezone) for d in days]),
                          strict=True))
    results = results if results is not None else open_results(cfg.results)
    results.ensure_schema()
    latest = {row["day"]: row for row in results.successful_runs(cfg.model.name, days[0], days[-1])}
    changed = [LateDay(d, int(latest[d]["rows_in"]), counts[d], int(latest[d]["model_version"]))
               for d in days if d in latest and int(latest[d]["rows_in"]) != counts[d]]
    logger.info("late data: %s of the %s days before %s changed since scored%s", len(changed), n, day,
                "".join(f"; {c.day}: {c.rows_before} -> {c.rows_now} rows" for c in changed))
    return changed


def rescore_late_days(cfg: Config, day: dt.date, *, recheck_days: int | None = None,
                      on_day: Callable[[LateDay], None] | None = None,
                      results: ResultsStore | None = None) -> list[LateDay]:
    """Re-score every day ``changed_days`` finds, each as its own run (trigger ``late-data``).

    A failed day is recorded (in the ledger and the returned ``error``) and the next one runs. ``results``:
    the open results store the ledger is read from and every re-score publishes into (default: the
    configured one, opened once here).

    Returns:
        One ``LateDay`` per changed day, oldest first, with its ``result`` or ``error``.
    """
    done: list[LateDay] = []
    results = results if results is not None else open_results(cfg.results)
    for late in changed_days(cfg, day, recheck_days, results=results):
        details = {"model_rule": "late-data-replaced-run",
                   "late_data": {"rows_before": late.rows_before, "rows_now": late.rows_now, "recheck_of": str(day)}}
        try:
            result = run_interval(cfg, DataInterval.for_day(late.day, cfg.timezone), version=late.version,
                                  trigger=TRIGGER, details=details, results=results)
            outcome = LateDay(late.day, late.rows_before, late.rows_now, late.version, result)
        except ScoringError as exc:
            outcome = LateDay(late.day, late.rows_before, late.rows_now, late.version, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad day must not stop the others
            logger.exception("late-data re-score of %s failed", late.day)
            outcome = LateDay(late.day, late.rows_before, late.rows_now, late.version,
                              error=f"{type(exc).__name__}: {exc}")
        done.append(outcome)
        if on_day:
            on_day(outcome)
    return done
