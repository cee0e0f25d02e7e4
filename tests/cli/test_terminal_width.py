"""Every table command fits an 80-column terminal (ids whole), and flags' help shows no value metavar."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SCORE_DAY
from tests.helpers import source_day

SCORING = Path(sys.executable).parent / "scoring"


def _run(cfg_path: Path, *args: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    out = subprocess.run([str(SCORING), *args, "--config", str(cfg_path)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, f"scoring {' '.join(args)}:\n{out.stdout}{out.stderr}"
    return out.stdout


def _fits(text: str) -> None:
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, "\n".join(long)


def test_every_table_command_fits_80_columns(cfg_path: Path, sample_db: Path, tmp_path: Path) -> None:
    first = SCORE_DAY - dt.timedelta(days=1)
    outputs = {
        "run": _run(cfg_path, "run", "--date", str(SCORE_DAY)),
        "backfill": _run(cfg_path, "backfill", "--start", str(first), "--end", str(first)),
    }
    data = tmp_path / "list.parquet"
    source_day(sample_db, SCORE_DAY).head(50).to_parquet(data, index=False)
    submitted = _run(cfg_path, "jobs", "submit", "--input", str(data), "--wait")
    job_id = re.search(r"\b(job[-_]\S+|[0-9a-f]{8,}\S*)", submitted)
    outputs.update({
        "runs": _run(cfg_path, "runs"),
        "jobs list": _run(cfg_path, "jobs", "list"),
        "models list": _run(cfg_path, "models", "list"),
        "models show": _run(cfg_path, "models", "show", "loan_default"),
        "report": _run(cfg_path, "report", "--start", str(first), "--end", str(SCORE_DAY)),
        "drift": _run(cfg_path, "drift", "--start", str(first), "--end", str(SCORE_DAY)),
    })
    for name, text in outputs.items():
        assert text.strip(), name
        _fits(text)
    ids = [line.split()[0] for line in outputs["jobs list"].splitlines() if line.strip() and line.split()[0] in
           submitted]
    assert ids, (submitted, outputs["jobs list"], job_id)  # the job id printed whole, copyable
    assert "loan_default v1" in outputs["models list"] and "roc_auc" in outputs["models list"]
    assert outputs["models show"].startswith("loan_default version 1") and "parity      passed" in \
        outputs["models show"]


@pytest.mark.parametrize("command", [["jobs", "submit"], ["models", "promote"], ["run"], ["backfill"]])
def test_help_shows_flags_without_a_value_and_no_markup(command: list[str]) -> None:
    from typer.testing import CliRunner

    from scoring.cli import app

    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output and "``" not in res.output, res.output
