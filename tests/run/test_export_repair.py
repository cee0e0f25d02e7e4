"""The reader export cannot silently diverge from the results: a kill between the publish COMMIT and the
export, or an export that cannot be written, is found by comparing the run each exported partition holds with
the results, reported (`scoring run` exits 4, `scoring export` exits 1) and repaired by the next publish,
`scoring runs` or `scoring export --repair`."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from tests.conftest import SCORE_DAY
from tests.run.fault_helpers import cli

runner = CliRunner()
OTHER_DAY = SCORE_DAY - dt.timedelta(days=1)


def _published_run(cfg, day: dt.date) -> str:
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        return con.execute("SELECT DISTINCT run_id FROM predictions WHERE day = ?", [day]).fetchall()[0][0]


def _exported(cfg, day: dt.date) -> list[tuple[str, int]]:
    """(run_id, rows) of the exported partition file, read as an analyst would: the Parquet itself."""
    file = cfg.results.path.with_name("results_export") / "predictions" / "loan_default" / f"{day}.parquet"
    if not file.exists():
        return []
    with duckdb.connect() as con:
        return con.execute("SELECT run_id, count(*) FROM read_parquet(?) GROUP BY ALL", [str(file)]).fetchall()


def _count(cfg, day: dt.date) -> int:
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        return con.execute("SELECT count(*) FROM predictions WHERE day = ?", [day]).fetchall()[0][0]


def test_a_kill_between_commit_and_export_is_repaired(cfg_path: Path, cfg) -> None:
    proc = cli(cfg_path, SCORE_DAY, "before_export")
    assert proc.returncode == -9, proc.stderr[-2000:]
    first = _published_run(cfg, SCORE_DAY)
    assert _exported(cfg, SCORE_DAY) == []  # committed, never exported
    res = runner.invoke(app, ["export", "--config", str(cfg_path)])
    assert res.exit_code == 1 and f"differs: loan_default {SCORE_DAY}" in res.output, res.output
    res = runner.invoke(app, ["runs", "--config", str(cfg_path)])
    assert res.exit_code == 0 and "reader export repaired: 1 partition" in res.output, res.output
    assert _exported(cfg, SCORE_DAY) == [(first, _count(cfg, SCORE_DAY))]

    # A rerun killed at the same point leaves the export on the old run: the next publish repairs it.
    proc = cli(cfg_path, SCORE_DAY, "before_export")
    assert proc.returncode == -9, proc.stderr[-2000:]
    second = _published_run(cfg, SCORE_DAY)
    assert second != first and _exported(cfg, SCORE_DAY) == [(first, _count(cfg, SCORE_DAY))]
    proc = cli(cfg_path, OTHER_DAY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _exported(cfg, SCORE_DAY) == [(second, _count(cfg, SCORE_DAY))]
    assert _exported(cfg, OTHER_DAY) == [(_published_run(cfg, OTHER_DAY), _count(cfg, OTHER_DAY))]
    res = runner.invoke(app, ["export", "--config", str(cfg_path)])
    assert res.exit_code == 0 and "holds the published runs" in res.output, res.output


def test_a_failed_export_exits_4_is_recorded_and_repaired_later(cfg_path: Path, cfg) -> None:
    target = cfg.results.path.with_name("results_export") / "predictions" / "loan_default" / f"{SCORE_DAY}.parquet"
    target.mkdir(parents=True)  # the export's rename onto it fails, as a full disk or a bad mount would
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 4, res.output
    assert "published, export failed" in res.output and "Traceback" not in res.output
    run = _published_run(cfg, SCORE_DAY)
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        status, note = con.execute("SELECT status, json_extract_string(details, '$.export') FROM runs "
                                   "WHERE run_id = ?", [run]).fetchall()[0]
    assert status == "success" and note.startswith("published, export failed")
    res = runner.invoke(app, ["export", "--repair", "--config", str(cfg_path)])
    assert res.exit_code == 1, res.output  # still blocked: one line, not a traceback
    assert len(res.output.strip().splitlines()) == 1
    shutil.rmtree(target)
    res = runner.invoke(app, ["export", "--repair", "--config", str(cfg_path)])
    assert res.exit_code == 0 and f"re-exported: loan_default {SCORE_DAY}" in res.output, res.output
    assert _exported(cfg, SCORE_DAY) == [(run, _count(cfg, SCORE_DAY))]


@pytest.fixture()
def full_disk(tmp_path: Path):
    """A real 2 MiB tmpfs (needs root and CAP_SYS_ADMIN; skipped with the reason otherwise), unmounted after."""
    import subprocess

    mount = tmp_path / "small_disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True, timeout=30, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here for a real full disk: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, timeout=30, check=False).returncode:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30, check=False)


def _fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system has no byte left (a real ENOSPC)."""
    filler = folder / "filler.bin"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
    return filler


def test_a_really_full_export_disk_exits_4_and_is_repaired_once_space_is_back(
        tmp_path: Path, sample_db: Path, store: Path, full_disk: Path) -> None:
    """The reader export on a real full file system (a tmpfs filled to its last byte), not a simulated
    failure: the run publishes, exits 4 with one line, the ledger says ``published, export failed``; once
    space is freed, ``scoring export --repair`` writes the partition of the published run."""
    from tests.conftest import write_config

    cfg_path = write_config(tmp_path, sample_db, store, results={"export_dir": str(full_disk / "export")})
    filler = _fill(full_disk)
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 4, res.output
    assert "published, export failed" in res.output and "Traceback" not in res.output, res.output
    results = tmp_path / "results.duckdb"
    with duckdb.connect(str(results), read_only=True) as con:
        run, rows = con.execute("SELECT run_id, count(*) FROM predictions WHERE day = ? GROUP BY ALL",
                                [SCORE_DAY]).fetchall()[0]
        status, note = con.execute("SELECT status, json_extract_string(details, '$.export') FROM runs "
                                   "WHERE run_id = ?", [run]).fetchall()[0]
    assert status == "success" and note.startswith("published, export failed"), note
    assert "No space left on device" in note or "space" in note.lower(), note
    res = runner.invoke(app, ["export", "--repair", "--config", str(cfg_path)])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output  # still full

    filler.unlink()
    res = runner.invoke(app, ["export", "--repair", "--config", str(cfg_path)])
    assert res.exit_code == 0 and f"re-exported: loan_default {SCORE_DAY}" in res.output, res.output
    file = full_disk / "export" / "predictions" / "loan_default" / f"{SCORE_DAY}.parquet"
    with duckdb.connect() as con:
        assert con.execute("SELECT run_id, count(*) FROM read_parquet(?) GROUP BY ALL",
                           [str(file)]).fetchall() == [(run, rows)]
        ledger = con.execute("SELECT status FROM read_parquet(?) WHERE run_id = ?",
                             [str(full_disk / "export" / "runs" / "all" / "runs.parquet"), run]).fetchall()
    assert ledger == [("success",)]  # the exported ledger caught up too
    assert not list(full_disk.rglob("*.tmp"))
