"""The reader export opens in the oldest DuckDB we support (1.1.3, installed in a throwaway environment from
PyPI) from a copied folder: the catalog's storage version is one DuckDB 1.1 reads, and its views read the
copy's own files (the writer's folder is removed first)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from scoring.run import pipeline
from tests.conftest import SCORE_DAY

ROOT = Path(__file__).resolve().parents[2]
OLDEST = "1.1.3"
PROBE = """
import duckdb, json, sys
con = duckdb.connect("catalog.duckdb", read_only=True)
rows = con.sql("SELECT source_key, score FROM predictions ORDER BY source_key").fetchall()
daily = con.sql("SELECT count(*) FROM daily_summary").fetchall()[0][0]
print(json.dumps({"version": duckdb.__version__, "rows": rows, "daily": daily}))
"""


def _old_duckdb(tmp_path: Path) -> Path:
    """A venv with duckdb==OLDEST; skipped (failed under CI=true) when PyPI is unreachable."""
    uv = ROOT / ".tools" / "bin" / "uv"
    venv = tmp_path / "old-duckdb"
    try:
        subprocess.run([str(uv), "venv", "-q", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                        f"duckdb=={OLDEST}"], check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        reason = f"cannot install duckdb=={OLDEST} from PyPI ({type(exc).__name__})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return venv / "bin" / "python"


def test_the_export_opens_in_duckdb_1_1_from_a_copied_folder(cfg, tmp_path: Path) -> None:
    result = pipeline.run_day(cfg, SCORE_DAY)
    export = cfg.results.path.with_name("results_export")
    copy = tmp_path / "elsewhere" / "export"
    shutil.copytree(export, copy)
    shutil.rmtree(export)  # a view that still named the writer's files would now read nothing
    python = _old_duckdb(tmp_path)
    proc = subprocess.run([str(python), "-c", PROBE], cwd=copy, capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["version"] == OLDEST
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        expected = con.sql("SELECT source_key, score FROM predictions ORDER BY source_key").fetchall()
    assert len(expected) == result.rows_scored > 0
    assert [tuple(r) for r in got["rows"]] == expected  # bit-identical through JSON's repr of doubles
    assert got["daily"] == 1
