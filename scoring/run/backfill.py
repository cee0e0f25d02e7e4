"""Backfill: each day of a range is its own run with its own ledger row."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scoring.config import Config
from scoring.dates import day_range
from scoring.errors import ScoringError
from scoring.run.model_choice import check_model_as_of
from scoring.run.pipeline import RunResult, run_day

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayOutcome:
    day: dt.date
    result: RunResult | None
    error: str | None


def backfill(cfg: Config, start: dt.date, end: dt.date, *, fail_fast: bool = False,
             on_day: Callable[[DayOutcome], None] | None = None, model_as_of: str = "now",
             **run_kwargs: Any) -> list[DayOutcome]:
    """Score each business day from ``start`` to ``end`` inclusive, in order.

    A failed day is recorded and the next one runs, unless ``fail_fast``. ``model_as_of`` is ``now`` (every
    day with the alias's target now) or ``day`` (each day with the version the alias pointed at on that
    day); a conflicting pin raises ConfigError before any day runs. Late data is not rechecked: a backfill
    re-scores its days anyway.
    """
    check_model_as_of(cfg, run_kwargs.get("version"), model_as_of)
    outcomes: list[DayOutcome] = []
    for day in day_range(start, end):
        try:
            outcome = DayOutcome(day, run_day(cfg, day, trigger="backfill", model_as_of=model_as_of, **run_kwargs),
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
