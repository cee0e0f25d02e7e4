"""Which business days the source holds rows for: a day a user names outside them gets a warning line.

``scoring run --date`` and ``scoring backfill`` accept any day from 1900-01-01 to 2999-12-31 (what every
timestamp type the sources use can represent, ``dates.parse_day``); within that, a day before the source's
first row or after its last one is almost always a typo (``2062`` for ``2026``) and scores nothing. The
source's range is one ``min``/``max`` query on its timestamp column (an index or DuckDB's zone maps answer
it), converted to business days in ``schedule.timezone`` (naive timestamps are local wall time).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from scoring.dates import zone_info
from scoring.errors import ScoringError

logger = logging.getLogger(__name__)


def _day(value: Any, zone: str) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(zone_info(zone)).date() if value.tzinfo is not None else value.date()
    if isinstance(value, dt.date):
        return value
    return None


def source_days(cfg: Any) -> tuple[dt.date, dt.date] | None:
    """(first, last) business day of the source's timestamp column, or None when the source is empty, has
    no usable timestamp column or cannot be read now (the run itself then says why)."""
    from scoring.storage.sources import open_source

    try:
        with open_source(cfg.source) as source:
            low, high = source.timestamp_bounds()
    except ScoringError as exc:
        logger.debug("source range unknown: %s", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - a best-effort warning never fails the command
        logger.debug("source range unknown: %s", exc)
        return None
    first, last = _day(low, cfg.timezone), _day(high, cfg.timezone)
    return (first, last) if first is not None and last is not None else None


def outside_source(cfg: Any, first: dt.date, last: dt.date) -> str | None:
    """One line when ``first .. last`` reaches outside the days the source holds, else None."""
    held = source_days(cfg)
    if held is None or (held[0] <= first and last <= held[1]):
        return None
    asked = str(first) if first == last else f"{first} .. {last}"
    return (f"{asked} is outside the days the source holds ({held[0]} .. {held[1]}, {cfg.source.timestamp_column}"
            f" in {cfg.timezone}): days without rows score nothing; check the date")
