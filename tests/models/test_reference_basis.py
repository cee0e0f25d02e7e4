"""Registration calibrates drift thresholds and performance bands on the training rows whatever they carry:
business days with a timestamp, chunks of a typical day's size drawn from the rows without one; it says
which in one line. A binary model's calibration check decides whether CBPE calibrates its scores."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.models.cbpe import expected_calibration_error
from tests.models.cases import cases, make_frame, training_rows
from tests.models.test_contract import duckdb_source, write_cfg

runner = CliRunner()
CASE = next(c for c in cases() if c.name == "binary")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, object]:
    folder = tmp_path_factory.mktemp("basis")
    truth = make_frame()
    with duckdb.connect(str(folder / "events.duckdb")) as con:
        con.register("frame", truth)
        con.execute("CREATE TABLE events AS SELECT * FROM frame")
    train = training_rows(truth)
    model = CASE.fit(train)
    joblib.dump(model, folder / "model.joblib")
    return folder, train, model


def _register(folder: Path, data: pd.DataFrame, name: str, *extra: str) -> tuple[str, dict]:
    path = folder / f"{name}.parquet"
    data.to_parquet(path)
    cfg = write_cfg(folder, duckdb_source(folder / "events.duckdb"), name)
    res = runner.invoke(app, ["models", "register", "--name", name, "--artifact", str(folder / "model.joblib"),
                              "--training-data", str(path), "--label", CASE.label, *extra, "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    meta = json.loads((folder / "models" / name / "1" / "metadata.json").read_text())
    return " ".join(res.output.split()), meta


def test_without_timestamp_thresholds_are_calibrated_on_day_sized_chunks(setup) -> None:
    folder, train, _ = setup
    text, meta = _register(folder, train[[*CASE.inputs, CASE.label]], "no_ts", "--day-rows", "240")
    assert "drift and performance reference: calibrated on 4 chunks of 240 rows (a typical day) drawn at random " \
           "from the training rows" in text
    assert "(typical day: --day-rows)" in text
    baseline = meta["reference"]["baseline"]
    assert baseline is not None and baseline["windows"] == 4
    assert set(baseline["features"]) == set(CASE.inputs)
    assert meta["performance"]["bands"]["roc_auc"]["chunks"] == 4
    # without --day-rows: the source has no rows in the last 14 days, so a tenth of the training rows
    text, meta = _register(folder, train[[*CASE.inputs, CASE.label]], "no_ts_default")
    assert f"calibrated on 10 chunks of {len(train) // 10} rows" in text
    assert "a tenth of the training rows" in text
    assert meta["reference"]["baseline"]["windows"] == 10


def test_with_timestamp_thresholds_are_calibrated_on_training_days(setup) -> None:
    folder, train, _ = setup
    text, meta = _register(folder, train[["id", "ts", *CASE.inputs, CASE.label]], "with_ts")
    assert "drift and performance reference: calibrated on 4 training days" in text
    assert meta["reference"]["baseline"]["windows"] == 4


def test_calibration_check_decides_whether_cbpe_calibrates(setup) -> None:
    folder, train, model = setup
    text, meta = _register(folder, train[[*CASE.inputs, CASE.label]], "calib", "--day-rows", "240")
    cal = meta["performance"]["calibration"]
    p = model.predict_proba(train[CASE.inputs])[:, 1]
    ece = expected_calibration_error(p, train[CASE.label].to_numpy())
    assert cal["ece"] == pytest.approx(ece, abs=1e-12)
    assert cal["calibrated_on_reference"] == (ece > cal["tolerance"])
    assert f"expected calibration error {ece:.3f}" in text
    # the calibrator, when fitted, is monotone and maps into [0, 1]
    if cal["calibrator"]:
        assert np.all(np.diff(cal["calibrator"]["y"]) >= 0)
