"""Business days: a run is keyed by the day it covers, never by the wall clock at run time.

A business day is a calendar day in one IANA time zone (``schedule.timezone``, default UTC): day D covers
``[local midnight of D, local midnight of D+1)``, 24 hours long except on daylight-saving changes (23 or 25).
Bounds are kept as UTC instants; ``naive(zone)`` gives them as wall-clock times for naive source columns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scoring.errors import ConfigError, ScoringError

UTC = "UTC"


@lru_cache(maxsize=64)
def zone_info(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA name (``America/New_York``); raise ScoringError naming an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScoringError(f"unknown time zone {name!r}: expected an IANA name such as 'UTC' or "
                           "'America/New_York'") from None


@dataclass(frozen=True)
class DataInterval:
    """Half-open interval ``start <= ts < end`` (aware UTC instants) of a business day in ``zone``.

    ``day`` (the partition key) is the local date of ``start`` in ``zone``.
    """

    start: dt.datetime
    end: dt.datetime
    zone: str = UTC

    @property
    def day(self) -> dt.date:
        return self.start.astimezone(zone_info(self.zone)).date()

    @property
    def hours(self) -> float:
        """Length in hours: 24, or 23 / 25 on the days the zone's clocks change."""
        return (self.end - self.start).total_seconds() / 3600

    @classmethod
    def for_day(cls, day: dt.date, zone: str = UTC) -> DataInterval:
        """Business day ``day`` in ``zone``: from its local midnight to the next (the first one, if a clock
        change repeats midnight)."""
        tz = zone_info(zone)
        start = dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz).astimezone(dt.UTC)
        return cls(start, end, zone)

    @classmethod
    def from_bounds(cls, start: dt.datetime, end: dt.datetime, zone: str = UTC) -> DataInterval:
        """Build from (possibly naive, read as UTC) bounds; ``zone`` names the day of ``start``."""
        start, end = _as_utc(start), _as_utc(end)
        if end <= start:
            raise ScoringError(f"data interval end {end.isoformat()} is not after start {start.isoformat()}")
        return cls(start, end, zone)

    def describe(self) -> dict[str, str | float]:
        """For the ledger: the bounds (ISO 8601, UTC), the zone and the length in hours."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "zone": self.zone,
                "hours": self.hours}

    def naive(self, zone: str = UTC) -> tuple[dt.datetime, dt.datetime]:
        """Bounds as naive wall-clock times in ``zone``, for TIMESTAMP (without time zone) columns whose
        values are local times of that zone."""
        tz = zone_info(zone)
        return (self.start.astimezone(tz).replace(tzinfo=None), self.end.astimezone(tz).replace(tzinfo=None))


def _as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


EARLIEST_DAY, LATEST_DAY = dt.date(1900, 1, 1), dt.date(2999, 12, 31)  # days a run or backfill may name


def parse_day(text: str) -> dt.date:
    """Parse ``YYYY-MM-DD`` between EARLIEST_DAY and LATEST_DAY (a day's interval must stay representable in
    every timestamp type the sources use); raise a ScoringError naming the bad text otherwise."""
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ScoringError(f"invalid date {text[:40]!r}: expected YYYY-MM-DD") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ScoringError(f"date {day} is outside {EARLIEST_DAY} .. {LATEST_DAY}; check the date")
    return day


def previous_business_day(moment: dt.datetime, zone: str = UTC) -> dt.date:
    """The last business day that is complete at ``moment`` (aware; naive is read as UTC): the local date
    of ``moment`` in ``zone``, minus one day."""
    return _as_utc(moment).astimezone(zone_info(zone)).date() - dt.timedelta(days=1)


def yesterday(zone: str = UTC, now: dt.datetime | None = None) -> dt.date:
    """The default day to score: the business day before today in ``zone``."""
    return previous_business_day(now or dt.datetime.now(dt.UTC), zone)


def day_of_run(zone: str, run_type: str, *, scheduled_at: dt.datetime | None = None,
               logical_date: dt.datetime | None = None, day: str | None = None) -> dt.date:
    """Which business day a scheduler's run scores (the rule of README "What day is scored").

    Args:
        zone: the business time zone.
        run_type: ``manual`` for a run a user triggered (``airflow dags trigger``/``test``, the UI);
            anything else (``scheduled``, ``backfill``) is a run of the schedule.
        scheduled_at: when a run of the schedule was due (Airflow: the end of its data interval).
        logical_date: the logical date a user gave a manual run, if any.
        day: an explicit ``YYYY-MM-DD`` (the DAG's ``day`` param); wins over everything.

    Returns:
        ``day`` if given. A manual run: the calendar date of its logical date as written in UTC
        (``airflow dags test DAG 2026-03-08`` scores business day 2026-03-08), or, without a logical date,
        the previous business day of ``scheduled_at``. A scheduled run: the previous business day of
        ``scheduled_at`` (a run due at D+1 06:00 local scores D).

    Raises:
        ScoringError: a bad ``day``, or no time to go by.
    """
    if day:
        return parse_day(day)
    if run_type == "manual" and logical_date is not None:
        return _as_utc(logical_date).date()
    if scheduled_at is None:
        raise ScoringError("cannot tell which day to score: the run has no data interval and no 'day' param")
    return previous_business_day(scheduled_at, zone)


def check_schedule_day(day: dt.date, start_date: dt.date, zone: str = UTC, now: dt.datetime | None = None,
                       *, explicit: bool = False) -> None:
    """Refuse a scheduler run's business day outside the schedule: not ended yet in ``zone`` (after
    ``yesterday(zone, now)``), or, unless the day was asked for ``explicit``-ly (the DAG's ``day`` param, like
    ``scoring run --date``), before ``start_date`` (a manual run of a DAG whose schedule has not started).

    Raises:
        ConfigError: one line naming the day, the bound and what to pass instead.
    """
    if day < start_date and not explicit:
        raise ConfigError(f"business day {day} is before schedule.start_date {start_date}: pass the day to "
                          "score as the 'day' param, or move schedule.start_date earlier")
    last = yesterday(zone, now)
    if day > last:
        raise ConfigError(f"business day {day} has not ended yet in {zone} (the latest complete day is {last}): "
                          "pass an earlier 'day'")


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Inclusive list of days from ``start`` to ``end``."""
    if end < start:
        raise ScoringError(f"end date {end} comes before start date {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
