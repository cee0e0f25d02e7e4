"""Business days: time zones and DST, what day a run scores, the day's champion in backfills, late rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.dates import DataInterval, day_of_run, yesterday
from scoring.errors import ConfigError, ScoringError
from scoring.models.store import ModelStore
from scoring.run import pipeline
from scoring.run.backfill import backfill
from scoring.run.late import rescore_late_days
from tests import business_days as bd
from tests.conftest import write_config
from tests.helpers import ledger, published

FAST = {"data_docs": False}


# --- plain functions -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("day", "hours", "start"), [
    (dt.date(2026, 3, 7), 24, "2026-03-07T05:00:00+00:00"),
    (dt.date(2026, 3, 8), 23, "2026-03-08T05:00:00+00:00"),   # spring forward: 02:00 -> 03:00
    (dt.date(2026, 3, 9), 24, "2026-03-09T04:00:00+00:00"),
    (dt.date(2026, 11, 1), 25, "2026-11-01T04:00:00+00:00"),  # fall back: 02:00 -> 01:00
    (dt.date(2026, 11, 2), 24, "2026-11-02T05:00:00+00:00"),
])
def test_business_day_bounds_in_new_york(day: dt.date, hours: int, start: str) -> None:
    interval = DataInterval.for_day(day, bd.NY)
    assert interval.hours == hours and interval.start.isoformat() == start and interval.day == day
    assert interval.naive(bd.NY) == (dt.datetime.combine(day, dt.time()),
                                     dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
    assert DataInterval.for_day(day + dt.timedelta(days=1), bd.NY).start == interval.end


def test_a_zone_east_of_utc_keeps_its_day_label() -> None:
    interval = DataInterval.for_day(dt.date(2026, 3, 29), "Europe/Berlin")  # CET -> CEST that night
    assert interval.start.isoformat() == "2026-03-28T23:00:00+00:00" and interval.hours == 23
    assert interval.day == dt.date(2026, 3, 29)


def test_which_day_a_run_scores() -> None:
    due = dt.datetime(2026, 3, 9, 6, tzinfo=bd.TZ)  # cron "0 6 * * *" in New York, due on the 9th
    assert day_of_run(bd.NY, "scheduled", scheduled_at=due) == dt.date(2026, 3, 8)
    assert day_of_run(bd.NY, "backfill", scheduled_at=due) == dt.date(2026, 3, 8)
    late_evening = dt.datetime(2026, 3, 9, 3, tzinfo=dt.UTC)  # 23:00 on the 8th in New York
    assert day_of_run(bd.NY, "scheduled", scheduled_at=late_evening) == dt.date(2026, 3, 7)
    # A manual run scores the day it names: `airflow dags test DAG 2026-03-08` (midnight UTC).
    assert day_of_run(bd.NY, "manual", scheduled_at=due,
                      logical_date=dt.datetime(2026, 3, 8, tzinfo=dt.UTC)) == dt.date(2026, 3, 8)
    assert day_of_run(bd.NY, "manual", scheduled_at=due) == dt.date(2026, 3, 8)  # no logical date
    assert day_of_run(bd.NY, "scheduled", scheduled_at=due, day="2026-01-02") == dt.date(2026, 1, 2)
    assert yesterday(bd.NY, now=dt.datetime(2026, 3, 9, 3, tzinfo=dt.UTC)) == dt.date(2026, 3, 7)
    assert yesterday(now=dt.datetime(2026, 3, 9, 3, tzinfo=dt.UTC)) == dt.date(2026, 3, 8)
    with pytest.raises(ScoringError, match="invalid date"):
        day_of_run(bd.NY, "manual", day="2026-02-30")


@pytest.mark.parametrize(("schedule", "message"), [
    ({"cron": "@hourly"}, "schedule.cron: Value error, '@hourly' fires more than once a day"),
    ({"cron": "0 6,18 * * *"}, "schedule.cron: Value error, '0 6,18 * * *' fires more than once a day"),
    ({"cron": "*/15 6 * * *"}, "schedule.cron: Value error, '*/15 6 * * *' fires more than once a day"),
    ({"cron": "@once"}, "schedule.cron: Value error, '@once' is not a cron expression"),
    ({"timezone": "America/NewYork"}, "schedule.timezone: Value error, unknown time zone 'America/NewYork'"),
])
def test_schedules_that_cannot_mean_one_business_day_are_refused_at_load(
        tmp_path: Path, sample_db: Path, store: Path, schedule: dict, message: str) -> None:
    path = write_config(tmp_path, sample_db, store, schedule=schedule)
    with pytest.raises(ConfigError, match="^config file .*" + message.replace("*", r"\*").replace("+", r"\+")):
        load_config(path)
    res = CliRunner().invoke(app, ["run", "--config", str(path), "--date", "2026-03-07"])
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 3  # one line, soft-wrapped by the terminal width at most


@pytest.mark.parametrize("cron", ["@daily", "0 6 * * *", "30 23 * * 1-5", "@weekly", "@quarterly"])
def test_daily_or_rarer_crons_load(tmp_path: Path, sample_db: Path, store: Path, cron: str) -> None:
    assert load_config(write_config(tmp_path, sample_db, store, schedule={"cron": cron})).schedule.cron == cron


# --- runs on a real DuckDB source around midnight and DST in New York -----------------------------------

@pytest.fixture(scope="module")
def ny_source(tmp_path_factory: pytest.TempPathFactory, sample_db: Path) -> tuple[Path, pd.DataFrame]:
    path = tmp_path_factory.mktemp("ny") / "ny.duckdb"
    return path, bd.build(path, sample_db)


def _source_rows(path: Path, table: str, keys: list[str]) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        frame = con.sql(f'SELECT * EXCLUDE (applied_at) FROM "{table}"').to_df()  # noqa: S608
    return frame[frame["application_id"].astype(str).isin(keys)]


def assert_scores_are_the_models(cfg, store: Path, source_db: Path, table: str, out: pd.DataFrame) -> None:
    """Published scores equal the model's own predict_proba on the same source rows (|diff| <= 1e-9)."""
    ms = ModelStore(store)
    for version, part in out.groupby("model_version"):
        model = ms.load(ms.get(cfg.model.name, int(version)))
        src = _source_rows(source_db, table, list(part["source_key"]))
        expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
        assert len(expected) == len(part)
        np.testing.assert_allclose(part["score"].to_numpy(), [expected[k] for k in part["source_key"]],
                                   rtol=0, atol=1e-9)


@pytest.mark.parametrize("table", list(bd.TABLES))
def test_each_row_lands_in_exactly_one_business_day(tmp_path: Path, store: Path, ny_source, table: str) -> None:
    source_db, rows = ny_source
    cfg = load_config(write_config(tmp_path, source_db, store, source=bd.source(table, source_db),
                                   schedule={"timezone": bd.NY}, validation=FAST))
    for day in bd.DAYS:
        pipeline.run_day(cfg, day)
    out = published(cfg.results.path)
    assert out["source_key"].is_unique and set(out["source_key"]) == set(rows["application_id"])
    got = dict(zip(out["source_key"], pd.to_datetime(out["day"]).dt.date, strict=True))
    assert {k: got[k] for k in rows["application_id"]} == dict(zip(rows["application_id"], rows["day"], strict=True))
    runs = ledger(cfg.results.path)
    assert (runs["rows_in"] == runs["rows_scored"] + runs["rows_rejected"]).all() and (runs["rows_rejected"] == 0).all()
    counts = dict(zip(pd.to_datetime(runs["day"]).dt.date, runs["rows_in"], strict=True))
    # 72 rows every 20 minutes of a 24-hour day, 69 on the 23-hour day and 75 on the 25-hour day, plus edge rows.
    assert counts == {dt.date(2026, 3, 7): 73, bd.SPRING: 72, dt.date(2026, 3, 9): 73,
                      dt.date(2026, 10, 31): 73, bd.FALL: 79, dt.date(2026, 11, 2): 73}
    hours = {d: json.loads(x)["interval"]["hours"] for d, x in zip(counts, runs["details"], strict=True)}
    assert hours[bd.SPRING] == 23 and hours[bd.FALL] == 25 and hours[dt.date(2026, 3, 7)] == 24
    assert_scores_are_the_models(cfg, store, source_db, table, out)


# --- the day's champion in a backfill -------------------------------------------------------------------

@pytest.fixture(scope="module")
def fifteen_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sample_data.generate import generate

    path = tmp_path_factory.mktemp("days15") / "source.duckdb"
    generate(path, dt.date(2026, 3, 1), 15, 60, seed=11)
    return path


def _register_v2(store: Path) -> None:
    """v2: the same fitted artifact registered again (its scores are v1's, its version number is not)."""
    ms = ModelStore(store)
    v1 = ms.get("loan_default", 1)
    ms.register("loan_default", v1.artifact, {k: v for k, v in v1.meta.items()
                                                if k not in ("name", "version", "created_at", "sha256")})
    for suite in (store.parent / "schemas" / "loan_default").glob("v1.json"):
        suite.with_name("v2.json").write_text(suite.read_text())


def test_backfill_model_as_of_day_scores_each_day_with_that_days_champion(
        tmp_path: Path, fifteen_days: Path, store: Path) -> None:
    _register_v2(store)
    # The alias history: v1 champion long before; v2 promoted on day 10 at 10:00 in New York.
    (store / "loan_default" / "aliases.jsonl").write_text(
        json.dumps({"alias": "champion", "version": 1, "at": "2026-01-01T00:00:00+00:00"}) + "\n")
    ModelStore(store).set_alias("loan_default", "champion", 2, at=dt.datetime(2026, 3, 10, 10, tzinfo=bd.TZ))
    days = [dt.date(2026, 3, d) for d in range(5, 16)]
    cfg = load_config(write_config(tmp_path, fifteen_days, store, schedule={"timezone": bd.NY}, validation=FAST))
    res = CliRunner().invoke(app, ["backfill", "-c", str(cfg.path), "--start", "2026-03-05", "--end", "2026-03-15",
                                   "--model-as-of", "day"])
    assert res.exit_code == 0, res.output
    out = published(cfg.results.path)
    by_day = out.groupby(pd.to_datetime(out["day"]).dt.date)["model_version"].agg(set).to_dict()
    assert by_day == {d: ({1} if d.day <= 9 else {2}) for d in days}
    runs = ledger(cfg.results.path)
    details = [json.loads(x) for x in runs["details"]]
    assert {d["model_rule"] for d in details} == {"alias-on-day"} and set(runs["trigger"]) == {"backfill"}
    assert details[5]["model_as_of_time"] == "2026-03-11T03:59:59.999999+00:00"  # the end of day 10 in New York
    assert (runs["rows_in"] == runs["rows_scored"] + runs["rows_rejected"]).all() and len(runs) == 11
    assert_scores_are_the_models(cfg, store, fifteen_days, "loan_applications", out)

    now = CliRunner().invoke(app, ["backfill", "-c", str(cfg.path), "--start", "2026-03-05", "--end", "2026-03-15",
                                   "--model-as-of", "now"])
    assert now.exit_code == 0, now.output
    again = published(cfg.results.path)
    assert set(again["model_version"]) == {2} and len(again) == len(out) and again["source_key"].is_unique
    assert {json.loads(x)["model_rule"] for x in ledger(cfg.results.path)["details"].iloc[11:]} == {"alias-now"}
    assert_scores_are_the_models(cfg, store, fifteen_days, "loan_applications", again)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_promotion_during_a_backfill_does_not_split_the_range(tmp_path: Path, fifteen_days: Path, store: Path,
                                                                parallel: int) -> None:
    """``--model-as-of now`` means the champion when the backfill started: v2 promoted after the first day
    has published leaves every day of the range on v1, and the ledger says when the version was resolved."""
    _register_v2(store)
    cfg = load_config(write_config(tmp_path, fifteen_days, store, validation=FAST))
    promoted: list[dt.date] = []

    def promote_after_first_day(outcome) -> None:
        if not promoted:
            ModelStore(store).set_alias("loan_default", "champion", 2)
            promoted.append(outcome.day)

    outcomes = backfill(cfg, dt.date(2026, 3, 5), dt.date(2026, 3, 9), on_day=promote_after_first_day,
                        parallel=parallel)
    assert [o.error for o in outcomes] == [None] * 5 and promoted == [dt.date(2026, 3, 5)]
    assert ModelStore(store).resolve("loan_default", "champion").version == 2  # the promotion did happen
    out = published(cfg.results.path)
    assert set(out["model_version"]) == {1} and out.groupby("day").ngroups == 5
    details = [json.loads(x) for x in ledger(cfg.results.path)["details"]]
    assert {d["model_rule"] for d in details} == {"alias-now"}
    assert len({d["model_resolved_at"] for d in details}) == 1
    assert_scores_are_the_models(cfg, store, fifteen_days, "loan_applications", out)
    # The next backfill starts after the promotion: v2 for its whole range.
    again = backfill(cfg, dt.date(2026, 3, 5), dt.date(2026, 3, 6))
    assert {o.result.model_version for o in again if o.result} == {2}


def test_model_as_of_day_needs_the_alias_on_that_day_and_no_pin(tmp_path: Path, sample_db: Path, store: Path) -> None:
    pinned = write_config(tmp_path, sample_db, store, model={"version": 1})
    res = CliRunner().invoke(app, ["backfill", "-c", str(pinned), "--start", "2026-03-05", "--end", "2026-03-06",
                                   "--model-as-of", "day"])
    assert res.exit_code == 1 and "model.version: 1 pins a version" in res.output and "Traceback" not in res.output
    (store / "loan_default" / "aliases.jsonl").write_text(
        json.dumps({"alias": "champion", "version": 1, "at": "2026-03-06T12:00:00+00:00"}) + "\n")
    cfg = load_config(write_config(tmp_path, sample_db, store, validation=FAST))
    outcomes = backfill(cfg, dt.date(2026, 3, 5), dt.date(2026, 3, 6), model_as_of="day")
    assert "alias 'champion' of model 'loan_default' did not exist yet on 2026-03-05" in outcomes[0].error
    assert outcomes[1].result is not None and outcomes[1].result.model_version == 1


# --- late-arriving rows ---------------------------------------------------------------------------------

def test_late_rows_are_rescored_in_the_next_run(tmp_path: Path, sample_db: Path, store: Path) -> None:
    source_db = tmp_path / "source.duckdb"
    source_db.write_bytes(sample_db.read_bytes())
    cfg = load_config(write_config(tmp_path, source_db, store, schedule={"recheck_days": 3}, validation=FAST))
    for day in (dt.date(2026, 3, 4), dt.date(2026, 3, 5), dt.date(2026, 3, 6)):
        pipeline.run_day(cfg, day)
    assert rescore_late_days(cfg, dt.date(2026, 3, 7)) == []  # nothing changed yet
    late_day = dt.date(2026, 3, 5)
    with duckdb.connect(str(source_db)) as con:  # 40 rows of the 5th arrive after it was scored
        con.execute("INSERT INTO loan_applications SELECT * REPLACE (application_id + 50000000 AS application_id) "
                    "FROM loan_applications WHERE applied_at >= '2026-03-05' AND applied_at < '2026-03-06' "
                    "ORDER BY application_id LIMIT 40")
    before = len(ledger(cfg.results.path))

    res = CliRunner().invoke(app, ["run", "-c", str(cfg.path), "--date", "2026-03-07", "--show", "0"])
    assert res.exit_code == 0, res.output
    assert "late data: days re-scored" in res.output and "2026-03-05" in res.output
    runs = ledger(cfg.results.path).iloc[before:]
    assert list(runs["trigger"]) == ["cli", "late-data"]
    late = runs.iloc[1]
    assert pd.Timestamp(late["day"]).date() == late_day and late["status"] == "success"
    assert late["rows_in"] == 640 == late["rows_scored"] + late["rows_rejected"]
    details = json.loads(late["details"])
    assert details["model_rule"] == "late-data-replaced-run"
    assert details["late_data"] == {"rows_before": 600, "rows_now": 640, "recheck_of": "2026-03-07"}
    out = published(cfg.results.path, late_day)
    assert out["source_key"].is_unique and len(out) == late["rows_scored"] and set(out["run_id"]) == {late["run_id"]}
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        quarantined = con.sql("SELECT count(*) FROM quarantine WHERE day = $1", params=[late_day]).fetchall()[0][0]
    assert quarantined == late["rows_rejected"]
    assert_scores_are_the_models(cfg, store, source_db, "loan_applications", out)
    # Other days keep their single run; a second run finds nothing new.
    assert rescore_late_days(cfg, dt.date(2026, 3, 7)) == []
    assert (ledger(cfg.results.path)["trigger"] == "late-data").sum() == 1
