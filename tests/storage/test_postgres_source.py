"""PostgresSource against the real server: types, NULLs, interval bounds, snapshot, wide tables, errors."""

from __future__ import annotations

import datetime as dt
import decimal
import socket
import threading
import time

import pyarrow as pa
import pytest

from scoring.config import SourceConfig
from scoring.dates import DataInterval
from scoring.errors import PublishError, SourceError
from scoring.storage.pgconn import redact_url, scrub, server_of
from scoring.storage.results import open_results
from scoring.storage.sources import open_source
from scoring.storage.sources.pg_numeric import SPECIAL_PREFIX
from scoring.storage.sources.rebatch import rebatch
from tests.storage.pg_helpers import make_wide_table, pg_execute

DAY = dt.date(2026, 3, 7)
SECRET = "s3cret-Pw"


def _source(url: str, table: str, **kw: object) -> SourceConfig:
    return SourceConfig(kind="postgres", url=url, table=table, timestamp_column=kw.pop("ts", "ts"),
                        key_column=kw.pop("key", "id"), **kw)


def _read(cfg: SourceConfig, day: dt.date = DAY, rows: int = 1000) -> pa.Table:
    with open_source(cfg) as src:
        return pa.Table.from_batches(list(src.batches(DataInterval.for_day(day), rows)), src.schema())


# --- no server needed -------------------------------------------------------------------------------------

def test_rebatch_gives_fixed_size_batches_in_order() -> None:
    parts = [pa.record_batch({"x": list(range(a, b))}) for a, b in ((0, 5), (5, 5), (5, 230), (230, 231))]
    out = list(rebatch(parts, 97))
    assert [b.num_rows for b in out] == [97, 97, 37]
    assert pa.Table.from_batches(out).column("x").to_pylist() == list(range(231))
    assert list(rebatch([], 10)) == []


def test_redaction_hides_passwords_in_every_url_form() -> None:
    for url in (f"postgresql://u:{SECRET}@h:5432/db", f"host=h user=u password={SECRET}",
                f"postgresql://u@h/db?password={SECRET}&sslmode=disable"):
        assert SECRET not in redact_url(url) and "***" in redact_url(url)
        assert SECRET not in scrub(f"driver said {SECRET} once", url)
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    # Unencoded '@' and spaces in passwords, in URL and keyword DSNs, inside a longer message.
    for password in ("Xq7@Zr9@Wt4", "Kj8q Lm2w", "Vb5x Nc3y@Hd6z"):
        for url in (f"postgresql://u:{password}@db.example:5432/prod", f"host=h user=u password='{password}'"):
            message = f"connection to {url} failed: FATAL"
            for part in password.replace("@", " ").split():
                assert part not in redact_url(message) and part not in scrub(message, url), (url, part)
    assert server_of(f"postgresql://u:{SECRET}@db.example:6543/prod") == "db.example:6543/prod"


# --- the real server --------------------------------------------------------------------------------------

@pytest.mark.postgres
def test_types_and_nulls_map_to_arrow(pg_url: str, pg_schema: str) -> None:
    t = f'"{pg_schema}".typed'
    pg_execute(pg_url, f"""CREATE TABLE {t} (id bigint, ts timestamptz, amount numeric(12, 2), big numeric,
        ratio real, small smallint, flag boolean, name text, code char(3), ref uuid, doc jsonb, born date)""")
    pg_execute(pg_url, f"""INSERT INTO {t} VALUES
        (1, '2026-03-07 01:30:00+02', 12345.67, 1e30, 0.5, 3, true, 'a', 'xy', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
         '{{"k": [1, 2]}}', '1990-05-01'),
        (2, '2026-03-07 02:30:00+02', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (3, '2026-03-07 00:00:00+00', -0.01, 123456789012345678901234567890.5, 'NaN', -1, false, 'é', NULL, NULL,
         'null', NULL),
        (4, '2026-03-07 23:59:59.999999+00', 0, 0, 1, 0, true, '', 'z', NULL, '{{}}', NULL),
        (5, '2026-03-08 00:00:00+00', 1, 1, 1, 1, true, 'next day', NULL, NULL, NULL, NULL)""")
    cfg = _source(pg_url, f"{pg_schema}.typed")
    with open_source(cfg) as src:
        schema = src.schema()
        assert src.count(DataInterval.for_day(DAY)) == 3
        assert src.count(DataInterval.for_day(DAY - dt.timedelta(days=1))) == 1
        # Mean and longest bytes of the day's text values (NULLs left out; uuid and json as the text read).
        widths = src.text_widths(DataInterval.for_day(DAY))
        assert widths["name"] == (1.0, 2) and widths["doc"] == (3.0, 4) and widths["ref"] == (0.0, 0)
        assert set(widths) == {"name", "code", "ref", "doc"}
    types = {f.name: f.type for f in schema}
    assert types["ts"] == pa.timestamp("us", tz="UTC")
    # numeric(p, s) exactly as decimal(p, s); an unconstrained numeric as the nearest double
    assert types["amount"] == pa.decimal128(12, 2) and types["big"] == pa.float64()
    assert types["ratio"] == pa.float32() and types["small"] == pa.int16() and types["flag"] == pa.bool_()
    assert types["ref"] == types["doc"] == types["name"] == types["code"] == pa.string()
    assert types["born"] == pa.date32()
    rows = {r["id"]: r for r in _read(cfg).to_pylist()}
    assert sorted(rows) == [2, 3, 4]  # 1 is 2026-03-06 23:30 UTC; 5 is the next day (end excluded)
    assert rows[2]["ts"] == dt.datetime(2026, 3, 7, 0, 30, tzinfo=dt.UTC)
    assert all(rows[2][c] is None for c in ("amount", "big", "ratio", "small", "flag", "name", "ref", "doc"))
    assert rows[3]["amount"] == decimal.Decimal("-0.01") and rows[3]["big"] == pytest.approx(1.2345678901234568e29)
    assert rows[3]["ratio"] != rows[3]["ratio"]  # NaN survives as NaN, not NULL
    assert rows[3]["name"] == "é" and rows[3]["doc"] == "null"
    assert rows[4]["ts"] == dt.datetime(2026, 3, 7, 23, 59, 59, 999999, tzinfo=dt.UTC)
    assert rows[4]["code"] == "z  "
    day_before = {r["id"]: r for r in _read(cfg, DAY - dt.timedelta(days=1)).to_pylist()}
    assert day_before[1]["amount"] == decimal.Decimal("12345.67") and day_before[1]["big"] == 1e30
    assert day_before[1]["ref"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert day_before[1]["doc"] == '{"k": [1, 2]}' and day_before[1]["born"] == dt.date(1990, 5, 1)


@pytest.mark.postgres
def test_naive_timestamp_and_date_columns_and_a_select(pg_url: str, pg_schema: str) -> None:
    t = f'"{pg_schema}".events'
    pg_execute(pg_url, f"CREATE TABLE {t} (id int, ts timestamp, d date, v numeric(6, 3))")
    pg_execute(pg_url, f"""INSERT INTO {t} VALUES (1, '2026-03-06 23:59:59.999999', '2026-03-06', 1.5),
        (2, '2026-03-07 00:00:00', '2026-03-07', 2.25), (3, '2026-03-07 23:59:59', '2026-03-07', NULL),
        (4, '2026-03-08 00:00:00', '2026-03-08', 4)""")
    assert sorted(_read(_source(pg_url, f"{pg_schema}.events")).column("id").to_pylist()) == [2, 3]
    assert sorted(_read(_source(pg_url, f"{pg_schema}.events", ts="d")).column("id").to_pylist()) == [2, 3]
    query = SourceConfig(kind="postgres", url=pg_url, timestamp_column="ts", key_column="id",
                         query=f"SELECT id, ts, v * 2 AS v2 FROM {t} WHERE v IS NOT NULL")
    got = _read(query)
    assert got.column_names == ["id", "ts", "v2"] and got.to_pylist() == [
        {"id": 2, "ts": dt.datetime(2026, 3, 7), "v2": 4.5}]


@pytest.mark.postgres
def test_day_counts_and_key_cuts_bind_the_bounds_of_each_column_type(pg_url: str, pg_schema: str) -> None:
    """Rows per business day (one grouped query, the late-data recheck's) and the key cuts (the fallback
    ntile query) with the bounds bound as values of the column's type: a zone-aware, a naive timestamp and a
    date column, each counted at the day's edges as a plain per-day count counts them."""
    t = f'"{pg_schema}".edges'
    pg_execute(pg_url, f"CREATE TABLE {t} (id int, tz timestamptz, ts timestamp, d date)")
    pg_execute(pg_url, f"""INSERT INTO {t} VALUES
        (1, '2026-03-05 23:59:59.999999+00', '2026-03-05 23:59:59.999999', '2026-03-05'),
        (2, '2026-03-06 00:00:00+00', '2026-03-06 00:00:00', '2026-03-06'),
        (3, '2026-03-06 12:00:00+00', '2026-03-06 12:00:00', '2026-03-06'),
        (4, '2026-03-07 23:59:59+00', '2026-03-07 23:59:59', '2026-03-07'),
        (5, '2026-03-08 00:00:00+00', '2026-03-08 00:00:00', '2026-03-08'),
        (6, '2026-03-07 01:00:00+00', '2026-03-07 01:00:00', '2026-03-07')""")
    days = [DataInterval.for_day(DAY - dt.timedelta(days=n)) for n in (2, 1, 0)]
    for ts in ("tz", "ts", "d"):
        with open_source(_source(pg_url, f"{pg_schema}.edges", ts=ts)) as src:
            assert src.day_counts(days) == [1, 2, 2] == [src.count(i) for i in days], ts
            assert src.key_cuts(days[1], 2) == [2], ts  # ntile(2) over keys 2, 3: buckets end at 2 and 3
            assert src.key_cuts(days[2], 2) == [4], ts  # keys 4, 6


@pytest.mark.postgres
def test_hundred_column_table_streams_in_chunks(pg_url: str, pg_schema: str) -> None:
    feats = make_wide_table(pg_url, pg_schema, 1500)
    with open_source(_source(pg_url, f"{pg_schema}.wide")) as src:
        # 100 columns, and a NaN marker after each of the 24 numeric(10, 3) ones (pg_numeric.special_column)
        assert len(src.schema()) == 124
        assert [n for n in src.schema().names if not n.startswith(SPECIAL_PREFIX)] == ["id", "ts", *feats]
        batches = list(src.batches(DataInterval.for_day(DAY), 400))
    assert [b.num_rows for b in batches] == [400, 400, 400, 300]
    table = pa.Table.from_batches(batches).sort_by("id")
    assert table.column("id").to_pylist() == list(range(1500))
    g = 33  # spot-check every column of one row against the formulas
    row = table.slice(g, 1).to_pylist()[0]
    for i, f in enumerate(feats):
        want = None if (g + i) % 11 == 0 else [g * (i + 0.5), g % (i + 2),
                                                decimal.Decimal(f"{round(g / 7.0 + i, 3):.3f}"), f"v{g % 5}"][i % 4]
        assert row[f] == pytest.approx(want) if isinstance(want, float) else row[f] == want, f
    # numeric(10, 3) exactly as decimal(10, 3)
    assert table.schema.field("f02").type == pa.decimal128(10, 3) and table.column("f00").null_count > 0


@pytest.mark.postgres
def test_one_snapshot_per_run(pg_url: str, pg_schema: str) -> None:
    t = f'"{pg_schema}".growing'
    pg_execute(pg_url, f"CREATE TABLE {t} (id int, ts timestamptz)")
    pg_execute(pg_url, f"INSERT INTO {t} SELECT g, '2026-03-07 12:00+00' FROM generate_series(1, 100) g")
    cfg = _source(pg_url, f"{pg_schema}.growing")
    with open_source(cfg) as src:
        interval = DataInterval.for_day(DAY)
        assert src.count(interval) == 100
        pg_execute(pg_url, f"INSERT INTO {t} SELECT g, '2026-03-07 13:00+00' FROM generate_series(101, 150) g")
        pg_execute(pg_url, f"DELETE FROM {t} WHERE id <= 10")
        ids = pa.Table.from_batches(list(src.batches(interval, 30))).column("id").to_pylist()
        assert sorted(ids) == list(range(1, 101))  # the late rows are not half-read
    assert sorted(_read(cfg).column("id").to_pylist()) == list(range(11, 151))  # a re-run picks them up


@pytest.mark.postgres
def test_missing_table_and_wrong_timestamp_column(pg_url: str, pg_schema: str) -> None:
    with pytest.raises(SourceError, match=r"relation .*ghost.* does not exist"), \
            open_source(_source(pg_url, f"{pg_schema}.ghost")) as src:
        src.schema()
    pg_execute(pg_url, f'CREATE TABLE "{pg_schema}".t (id int, ts text)')
    with open_source(_source(pg_url, f"{pg_schema}.t")) as src, pytest.raises(SourceError, match="has type string"):
        src.count(DataInterval.for_day(DAY))


@pytest.mark.postgres
def test_connection_refused_is_retried_then_one_line(pg_url: str) -> None:
    cfg = _source(f"postgresql://postgres:{SECRET}@127.0.0.1:1/test", "t", connect_timeout_s=1.5)
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        open_source(cfg)
    took = time.monotonic() - started
    msg = str(err.value)
    assert msg.startswith("cannot connect to the PostgreSQL source at 127.0.0.1:1/test: connection refused")
    assert "gave up after" in msg and "\n" not in msg and SECRET not in msg
    assert 1.4 < took < 8


@pytest.mark.postgres
def test_authentication_and_unknown_database_fail_fast(pg_url: str) -> None:
    cfg = _source(f"postgresql://no_such_user:{SECRET}@127.0.0.1:5432/test", "t", connect_timeout_s=20)
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        open_source(cfg)
    assert time.monotonic() - started < 5  # not retried: waiting cannot fix a credential
    msg = str(err.value)
    assert "127.0.0.1:5432/test: authentication failed" in msg and "no_such_user" in msg
    assert SECRET not in msg and "\n" not in msg
    cfg = _source(f"postgresql://postgres:{SECRET}@127.0.0.1:5432/no_such_db", "t")
    with pytest.raises(SourceError, match=r"at 127\.0\.0\.1:5432/no_such_db: unknown database") as err:
        open_source(cfg)
    assert SECRET not in str(err.value)
    from scoring.config import ResultsConfig

    res = ResultsConfig(kind="postgres", url=f"postgresql://no_such_user:{SECRET}@127.0.0.1:5432/test")
    with pytest.raises(PublishError, match="PostgreSQL results at .*authentication failed") as err:
        open_results(res).ensure_schema()
    assert SECRET not in str(err.value)


@pytest.mark.postgres
def test_a_server_that_never_answers_times_out(pg_url: str) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts TCP connections (kernel backlog) but never speaks the protocol
    port = silent.getsockname()[1]
    stop = threading.Event()
    try:
        cfg = _source(f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/test", "t", connect_timeout_s=2)
        started = time.monotonic()
        with pytest.raises(SourceError) as err:
            open_source(cfg)
        assert f"127.0.0.1:{port}/test: timeout" in str(err.value) and SECRET not in str(err.value)
        assert 1.9 < time.monotonic() - started < 15
    finally:
        stop.set()
        silent.close()
