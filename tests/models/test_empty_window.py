"""Training or registering over a window with no source rows: one line naming the window and what the
source has, not scikit-learn's "Found array with 0 sample(s)"."""

from __future__ import annotations

from pathlib import Path

import duckdb
from typer.testing import CliRunner

from scoring.cli import app
from tests.conftest import write_config


def test_an_empty_training_window_names_it_and_the_rows_the_source_has(tmp_path: Path, sample_db: Path) -> None:
    cfg_path = write_config(tmp_path, sample_db, tmp_path / "models")
    with duckdb.connect(str(sample_db), read_only=True) as con:
        count, first, last = con.execute("SELECT count(*), min(applied_at), max(applied_at) "
                                     "FROM loan_applications").fetchone()
    runner = CliRunner()
    for args in (["train", "--start", "2025-01-01", "--end", "2025-01-31"],
                 ["models", "register", "--name", "m", "--artifact", str(tmp_path / "m.joblib"),
                  "--start", "2025-01-01", "--end", "2025-01-31"]):
        res = runner.invoke(app, [*args, "--config", str(cfg_path)])
        assert res.exit_code == 1, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.output, res.output
        assert "no source rows between 2025-01-01 and 2025-01-31" in lines[0], lines[0]
        assert f"the source has {count:,} rows from {first} to {last}" in lines[0], lines[0]
