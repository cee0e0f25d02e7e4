"""A day whose feature is (almost) all NULL fails even when the model imputes it: the generated suite holds a
critical null-share rule at training's share + NULL_FLOOD_MARGIN, naming the feature and the shares."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from scoring.cli import app
from tests.conftest import SCORE_DAY, write_config

runner = CliRunner()


def test_a_null_flood_fails_the_day(tmp_path: Path, sample_db: Path, store: Path) -> None:
    src = tmp_path / "src.duckdb"
    shutil.copy(sample_db, src)
    with duckdb.connect(str(src)) as con:
        con.execute("UPDATE loan_applications SET credit_score = NULL WHERE CAST(applied_at AS DATE) = ?",
                    [SCORE_DAY])
    cfg_path = write_config(tmp_path, src, store)
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 1, res.output
    assert "expect_column_proportion_of_non_null_values_to_be_between on 'credit_score'" in res.output, res.output
    assert "observed 0.0000" in res.output
    with duckdb.connect(str(tmp_path / "results.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM predictions WHERE day = ?", [SCORE_DAY]).fetchall()[0][0] == 0
    # The next day, untouched, still publishes.
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY - dt.timedelta(days=1))])
    assert res.exit_code == 0, res.output
