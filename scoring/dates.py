"""Data intervals: a run is keyed by the day it covers, never by the wall clock at run time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from scoring.errors import ScoringError


@dataclass(frozen=True)
class DataInterval:
    """Half-open interval ``start <= ts < end`` in UTC; ``day`` is the partition key."""

    start: dt.datetime
    end: dt.datetime

    @property
    def day(self) -> dt.date:
        return self.start.date()

    @classmethod
    def for_day(cls, day: dt.date) -> DataInterval:
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return cls(start, start + dt.timedelta(days=1))

    @classmethod
    def from_bounds(cls, start: dt.datetime, end: dt.datetime) -> DataInterval:
        """Build from (possibly naive) bounds, e.g. Airflow's data_interval_start/end."""
        start, end = _as_utc(start), _as_utc(end)
        if end <= start:
            raise ScoringError(f"data interval end {end.isoformat()} is not after start {start.isoformat()}")
        return cls(start, end)

    def naive(self) -> tuple[dt.datetime, dt.datetime]:
        """Bounds as naive UTC datetimes, for TIMESTAMP (without time zone) columns."""
        return self.start.replace(tzinfo=None), self.end.replace(tzinfo=None)


def _as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def parse_day(text: str) -> dt.date:
    """Parse ``YYYY-MM-DD``; raise a ScoringError naming the bad text otherwise."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ScoringError(f"invalid date {text!r}: expected YYYY-MM-DD") from None


def yesterday(today: dt.date | None = None) -> dt.date:
    """The default day to score: the day before ``today`` (UTC)."""
    today = today or dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=1)


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Inclusive list of days from ``start`` to ``end``."""
    if end < start:
        raise ScoringError(f"end date {end} comes before start date {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
