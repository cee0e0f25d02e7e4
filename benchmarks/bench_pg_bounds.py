"""The PostgreSQL source's whole-interval queries with the interval bounds bound as text (cast per row) vs as
values of the timestamp column's type (what ``PostgresSource._value_bounds`` binds), side by side: the plan's
key cuts for a key that is not a plain integer or text (``key_cuts``: a uuid key, one ``ntile`` window) and the
late-data recheck's rows per day (``day_counts``: one grouped query over ``--days`` days).

    .venv/bin/python benchmarks/bench_pg_bounds.py [--rows 1000000] [--days 3] [--repeat 5]
        [--url postgresql://postgres@127.0.0.1:5432/test]

Both forms run the same SQL text (the source builds it); only the bound parameters differ. Prints medians of
``--repeat`` interleaved rounds, the ratio, and checks both forms return the same cuts and counts. The
throwaway schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_postgres import drop_schemas  # noqa: E402

from scoring.config import SourceConfig  # noqa: E402
from scoring.dates import DataInterval  # noqa: E402
from scoring.storage.sources import open_source  # noqa: E402

DEFAULT_URL = os.environ.get("SCORING_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
DAY = dt.date(2026, 3, 7)


def _build(url: str, schema: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
        # uuid keys; timestamps spread over the first day (the other days of --days are empty)
        con.execute(f'CREATE TABLE "{schema}".t AS SELECT md5(g::text)::uuid AS id, timestamptz '
                    f"'{DAY} 00:00+00' + g * (interval '86399 s' / {rows}) AS ts FROM generate_series(1, {rows}) g")
        con.execute(f'ANALYZE "{schema}".t')


def _as_text(src: Any, fn: Any, *args: Any) -> Any:
    """Run ``fn`` with the source's bound values replaced by their text (the form before values were bound)."""
    real = src._value_bounds

    def text(interval: DataInterval) -> tuple[str, tuple[str, str]]:
        cast, (lo, hi) = real(interval)
        return cast, (lo.isoformat(), hi.isoformat())

    src._value_bounds = text
    try:
        return fn(*args)
    finally:
        src._value_bounds = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    schema = f"bench_bounds_{uuid.uuid4().hex[:8]}"
    _build(args.url, schema, args.rows)
    cfg = SourceConfig(kind="postgres", url=args.url, table=f"{schema}.t", timestamp_column="ts", key_column="id")
    day = DataInterval.for_day(DAY)
    days = [DataInterval.for_day(DAY + dt.timedelta(days=i)) for i in range(args.days)]
    seconds: dict[str, list[float]] = {}
    outputs: dict[str, Any] = {}
    try:
        for _ in range(args.repeat):
            for form in ("text", "value"):
                with open_source(cfg) as src:
                    for name, fn, fargs in (("key_cuts (uuid key, 8 chunks)", src.key_cuts, (day, 8)),
                                            (f"day_counts ({args.days} days)", src.day_counts, (days,))):
                        clock = time.perf_counter()
                        out = _as_text(src, fn, *fargs) if form == "text" else fn(*fargs)
                        seconds.setdefault(f"{name}|{form}", []).append(time.perf_counter() - clock)
                        outputs.setdefault(name, {})[form] = out
    finally:
        drop_schemas(args.url, schema)
    print(f"{args.rows:,} rows; medians of {args.repeat} interleaved rounds (s)")
    print(f"{'query':34} {'bound as text':>14} {'bound as value':>15} {'text / value':>13}  same output")
    for name, both in outputs.items():
        text = statistics.median(seconds[f"{name}|text"])
        value = statistics.median(seconds[f"{name}|value"])
        print(f"{name:34} {text:14.3f} {value:15.3f} {text / value:12.2f}x  {both['text'] == both['value']}")
    print("load average (1/5/15 min): {:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
