"""Drift judged against the training days' own variation, point-mass bins, boolean levels, pooled windows and
per-feature settings: real registrations (baseline from the source's training days) and real runs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import joblib
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.models.reference import actual_shares, expected_shares, psi
from scoring.run import run_day
from tests.quality.drift_data import FEATURES, START, TRAIN_DAYS, make_days

runner = CliRunner()
DAYS = 66
CLEAN = START + dt.timedelta(days=61)  # a Wednesday, undrifted
ZERO_SHARE_SHIFT = START + dt.timedelta(days=64)


@pytest.fixture(scope="module")
def days_frame() -> pd.DataFrame:
    return make_days(days=DAYS)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, days_frame: pd.DataFrame) -> Path:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train = days_frame[days_frame["ts"] < pd.Timestamp(START + dt.timedelta(days=TRAIN_DAYS))]
    ct = ColumnTransformer([("num", StandardScaler(), ["dow", "zinf", "season", "x"]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), ["flag", "segment"])])
    model = make_pipeline(ct, LogisticRegression(max_iter=500)).fit(train[FEATURES], train["y"])
    path = tmp_path_factory.mktemp("drift_model") / "model.joblib"
    joblib.dump(model, path)
    return path


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory, days_frame: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("drift_source") / "days.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("frame", days_frame)
        con.execute("CREATE TABLE events AS SELECT * FROM frame")
    return path


def setup(folder: Path, source: dict, artifact: Path, drift: dict | None = None, results: dict | None = None) -> Path:
    raw = {"source": source, "model": {"store": str(folder / "models"), "name": "m"},
           "results": results or {"kind": "duckdb", "path": str(folder / "results.duckdb"),
                                  "staging_dir": str(folder / "staging")},
           "validation": {"data_docs": False, "suites_dir": str(folder / "schemas"), "drift": drift or {}}}
    cfg = folder / "scoring.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    end = START + dt.timedelta(days=TRAIN_DAYS - 1)
    res = runner.invoke(app, ["models", "register", "--name", "m", "--artifact", str(artifact), "--start",
                              str(START), "--end", str(end), "--label", "y", "--alias", "champion",
                              "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    return cfg


def duck(db: Path) -> dict:
    return {"kind": "duckdb", "path": str(db), "table": "events", "timestamp_column": "ts", "key_column": "id"}


def drift_rows(results: Path, day: dt.date) -> pd.DataFrame:
    with duckdb.connect(str(results), read_only=True) as con:
        return con.sql("SELECT * FROM drift WHERE day = $1", params=[day]).df().set_index("feature")


def test_calibrated_thresholds_silence_daily_constant_and_seasonal_features(tmp_path, source_db, artifact) -> None:
    cfg = setup(tmp_path, duck(source_db), artifact)
    meta = json.loads((tmp_path / "models" / "m" / "1" / "metadata.json").read_text())
    baseline = meta["reference"]["baseline"]
    assert baseline["windows"] == TRAIN_DAYS and baseline["features"]["dow"]["mean"] > 5  # constant within a day
    run_day(load_config(cfg), CLEAN)
    drift = drift_rows(tmp_path / "results.duckdb", CLEAN)
    assert drift.loc["dow", "psi"] > 5 and drift.loc["season", "psi"] > 1  # large, as on every training day
    assert set(drift["status"]) == {"ok"}, drift[["psi", "status", "alert_at"]]
    assert drift.loc["dow", "basis"] == "calibrated" and drift.loc["dow", "alert_at"] > drift.loc["dow", "psi"]
    # The same day under fixed thresholds: the daily-constant feature alerts, as it used to every day.
    (tmp_path / "fixed").mkdir()
    fixed = setup(tmp_path / "fixed", duck(source_db), artifact, {"method": "fixed"})
    run_day(load_config(fixed), CLEAN)
    drift = drift_rows(tmp_path / "fixed" / "results.duckdb", CLEAN)
    assert drift.loc["dow", "status"] == "alert" and drift.loc["dow", "basis"] == "fixed"


def test_a_change_of_the_zero_share_alerts(tmp_path, source_db, artifact, days_frame) -> None:
    """zinf is 0 on 94% of training rows: the zero gets a bin of its own, so a day with 89% non-zero values
    alerts (plain quantile edges collapse to one value there and saw nothing)."""
    cfg = setup(tmp_path, duck(source_db), artifact)
    meta = json.loads((tmp_path / "models" / "m" / "1" / "metadata.json").read_text())
    assert meta["reference"]["features"]["zinf"]["points"] == [0.0]
    run_day(load_config(cfg), ZERO_SHARE_SHIFT)
    drift = drift_rows(tmp_path / "results.duckdb", ZERO_SHARE_SHIFT)
    assert drift.loc["zinf", "status"] == "alert" and drift.loc["zinf", "psi"] > 1
    assert drift.loc["x", "status"] == "ok" and drift.loc["flag", "status"] == "ok"


@pytest.mark.postgres
def test_boolean_levels_are_ok_on_an_undrifted_day_from_duckdb_and_postgres(tmp_path, source_db, artifact,
                                                                             days_frame, pg_url, pg_schema) -> None:
    """The training reference and the run spell boolean levels alike (true/false): an undrifted day is ok."""
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    rows = days_frame.assign(ts=days_frame["ts"].dt.tz_localize("UTC"))
    with pg.connect(pg_url) as con, con.cursor() as cur:
        cur.adbc_ingest("events", pa.Table.from_pandas(rows, preserve_index=False), mode="create",
                        db_schema_name=pg_schema)
        con.commit()
    for name, source in (("duck", duck(source_db)),
                         ("pg", {"kind": "postgres", "url": pg_url, "table": f"{pg_schema}.events",
                                 "timestamp_column": "ts", "key_column": "id"})):
        folder = tmp_path / name
        folder.mkdir()
        cfg = setup(folder, source, artifact)
        meta = json.loads((folder / "models" / "m" / "1" / "metadata.json").read_text())
        assert sorted(meta["reference"]["features"]["flag"]["shares"]) == ["false", "true"]
        run_day(load_config(cfg), CLEAN)
        drift = drift_rows(folder / "results.duckdb", CLEAN)
        day = days_frame[days_frame["ts"].dt.date == CLEAN]
        ref = meta["reference"]["features"]["flag"]
        assert drift.loc["flag", "psi"] == pytest.approx(psi(expected_shares(ref), actual_shares(ref, day["flag"])))
        assert drift.loc["flag", "psi"] < 0.05 and drift.loc["flag", "status"] == "ok", name


def test_pooled_window_and_per_feature_settings(tmp_path, source_db, artifact, days_frame) -> None:
    drift = {"window_days": 2, "exclude": ["season"], "features": {"x": {"warn": 0.001, "alert": 0.002}}}
    cfg = load_config(setup(tmp_path, duck(source_db), artifact, drift))
    meta = json.loads((tmp_path / "models" / "m" / "1" / "metadata.json").read_text())
    assert meta["reference"]["baseline"]["window_days"] == 2
    first, second = CLEAN - dt.timedelta(days=1), CLEAN
    run_day(cfg, first)
    run_day(cfg, second)
    got = drift_rows(tmp_path / "results.duckdb", second)
    both = days_frame[days_frame["ts"].dt.date.isin([first, second])]
    for feat in ("zinf", "x", "flag", "segment"):
        ref = meta["reference"]["features"][feat]
        assert got.loc[feat, "psi"] == pytest.approx(psi(expected_shares(ref), actual_shares(ref, both[feat])),
                                                     rel=1e-9), feat
    assert got.loc["season", "basis"] == "excluded" and got.loc["season", "status"] == "ok"
    assert got.loc["x", "basis"] == "configured" and got.loc["x", "status"] == "alert"
    assert got.loc["dow", "basis"] == "calibrated"
