"""A source for business-day tests: the same instants in America/New_York, around local midnight and both 2026
DST changes (2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00), stored three ways.

Rows are real sample applications (so the sample model scores them) with new timestamps: filler every 20
minutes of each local day (69 on the 23-hour day, 75 on the 25-hour day, 72 otherwise) and edge rows at
local midnight, one microsecond before it, and in the skipped / repeated hour. Tables:

- ``apps_local``: ``TIMESTAMP`` holding New York wall-clock time (naive; the business zone by default)
- ``apps_tz``: ``TIMESTAMPTZ`` (zone-aware instants)
- ``apps_utc``: ``TIMESTAMP`` holding UTC wall-clock time (``source.timestamp_timezone: UTC``)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

NY = "America/New_York"
TZ = ZoneInfo(NY)
DAYS = [dt.date(2026, 3, 7), dt.date(2026, 3, 8), dt.date(2026, 3, 9),
        dt.date(2026, 10, 31), dt.date(2026, 11, 1), dt.date(2026, 11, 2)]
SPRING, FALL = dt.date(2026, 3, 8), dt.date(2026, 11, 1)
TABLES = {"apps_local": {}, "apps_tz": {}, "apps_utc": {"timestamp_timezone": "UTC"}}


def _local(day: dt.date, h: int, m: int = 0, s: int = 0, us: int = 0, fold: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, h, m, s, us, tzinfo=TZ, fold=fold)


def instants() -> list[dt.datetime]:
    """Every row's instant (aware, UTC), filler first, then the edge rows."""
    out: list[dt.datetime] = []
    for day in DAYS:
        start = _local(day, 0).astimezone(dt.UTC)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=TZ).astimezone(dt.UTC)
        t = start
        while t < end:
            out.append(t)
            t += dt.timedelta(minutes=20)
    edges = [_local(d, 23, 59, 59, 999_999) for d in DAYS]  # one microsecond before local midnight
    edges += [_local(SPRING, 1, 59, 59), _local(SPRING, 3, 0, 0),  # either side of the skipped hour
              _local(FALL, 1, 30, 5, fold=0), _local(FALL, 1, 30, 5, fold=1),  # the repeated 01:30, EDT then EST
              _local(FALL, 0, 0, 0, 1)]
    return out + [e.astimezone(dt.UTC) for e in edges]


def expected_day(instant: dt.datetime) -> dt.date:
    """The business day of an instant: its calendar date in New York."""
    return instant.astimezone(TZ).date()


def build(path: Path, sample_db: Path) -> pd.DataFrame:
    """Write the three tables to ``path``; return the rows (``application_id``, ``instant``, ``day``)."""
    stamps = instants()
    with duckdb.connect(str(sample_db), read_only=True) as con:
        rows = con.sql(f"SELECT * FROM loan_applications ORDER BY application_id LIMIT {len(stamps)}").to_df()
    assert len(rows) == len(stamps)
    utc = pd.Series(pd.to_datetime([s.replace(tzinfo=None) for s in stamps])).dt.tz_localize("UTC")
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, values in (("apps_local", utc.dt.tz_convert(NY).dt.tz_localize(None)),
                             ("apps_tz", utc), ("apps_utc", utc.dt.tz_localize(None))):
            frame = rows.assign(applied_at=values.to_numpy() if name != "apps_tz" else values)
            con.register("frame", frame)
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame')  # noqa: S608 - constant names
            con.unregister("frame")
    return pd.DataFrame({"application_id": rows["application_id"].astype(str), "instant": stamps,
                         "day": [expected_day(s) for s in stamps]})


def source(name: str, path: Path) -> dict:
    """The ``source`` section of a config reading table ``name`` of ``path``."""
    return {"kind": "duckdb", "path": str(path), "table": name, "timestamp_column": "applied_at",
            "key_column": "application_id", **TABLES[name]}
