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


def test_a_suite_written_before_the_rule_still_fails_a_flood_and_the_margin_is_configured(
        tmp_path: Path, sample_db: Path, store: Path) -> None:
    """A suite file without the null-flood rule (as written by earlier releases): the run adds it. The margin
    is ``validation.null_flood_margin``: a 30% share of NULLs passes at the default, fails at 0.1."""
    import json

    src = tmp_path / "src.duckdb"
    shutil.copy(sample_db, src)
    with duckdb.connect(str(src)) as con:
        con.execute("UPDATE loan_applications SET credit_score = NULL WHERE CAST(applied_at AS DATE) = ?",
                    [SCORE_DAY])
        con.execute("UPDATE loan_applications SET debt_to_income = NULL WHERE CAST(applied_at AS DATE) = ? "
                    "AND application_id % 10 < 3", [SCORE_DAY - dt.timedelta(days=1)])
    cfg_path = write_config(tmp_path, src, store)
    res = runner.invoke(app, ["models", "suite", "loan_default", "--version", "1", "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    suite_file = tmp_path / "schemas" / "loan_default" / "v1.json"
    suite = json.loads(suite_file.read_text())
    old = [e for e in suite["expectations"] if "null flood" not in (e.get("meta") or {}).get("why", "")]
    assert len(old) < len(suite["expectations"])  # the generated suite had the rule; the old one lacks it
    suite_file.write_text(json.dumps({**suite, "expectations": old}))

    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 1, res.output
    assert "'credit_score'" in res.output and "observed 0.0000" in res.output, res.output
    with duckdb.connect(str(tmp_path / "results.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM predictions WHERE day = ?", [SCORE_DAY]).fetchall()[0][0] == 0

    day = SCORE_DAY - dt.timedelta(days=1)
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(day)])
    assert res.exit_code == 0, res.output  # 30% missing: within the default margin
    tight = tmp_path / "tight"
    tight.mkdir()
    tight_cfg = write_config(tight, src, store, validation={"range_rule": "minmax", "null_flood_margin": 0.1,
                                                            "suites_dir": str(tmp_path / "schemas")})
    res = runner.invoke(app, ["run", "--config", str(tight_cfg), "--date", str(day)])
    assert res.exit_code == 1 and "'debt_to_income'" in res.output, res.output
