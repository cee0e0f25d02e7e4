"""The staging area on a local path and on an S3-compatible object store (moto's server), alike: write,
verify, reuse, corrupt-then-refuse, holders and cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from scoring.config import ResultsConfig, load_config
from scoring.errors import ConfigError
from scoring.storage.stagefs import StagePath, batch_reader, staging_root
from scoring.storage.staging import Stage, cleanup, input_digest, remove_stale
from tests.conftest import write_config


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> StagePath:
    """The staging root of a config whose staging_dir is a local path or an s3:// URI."""
    where = str(tmp_path / "staging") if request.param == "local" else request.getfixturevalue("s3_staging")
    return staging_root(ResultsConfig(kind="duckdb", path=tmp_path / "r.duckdb", staging_dir=where))


def _tables(n: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    preds = pa.table({"source_key": [f"k{i}" for i in range(n)], "score": [(i * 37 + seed) % 100 / 100 for i in range(n)],
                      "label": pa.array([i % 2 for i in range(n)], pa.int8())})
    quarantine = pa.table({"source_key": ["bad"], "column_name": ["age"], "rule": ["range"], "value": ["-1"],
                           "row_json": ["{}"], "reason": ["age < 18"]})
    return preds, quarantine


def test_write_verify_reuse(root: StagePath) -> None:
    stage = Stage(root / "model" / "2026-03-07" / "run-a")
    preds, quarantine = _tables(500)
    digest = input_digest(preds)
    written = stage.write(0, 501, preds, quarantine, {"gate": 1}, digest)
    stage.write(1, 3, *_tables(3, seed=1))

    again = Stage(stage.root)  # a retried run: a new Stage on the same folder
    assert again.completed(0, digest) == written and again.reused == {0}
    assert again.completed(0, input_digest(preds.slice(1))) is None  # cut from other rows: redone
    assert [m.index for m in again.manifests()] == [0, 1]
    files = again.prediction_files(again.manifests())
    assert [f.name for f in files] == ["chunk-00000.parquet", "chunk-00001.parquet"]
    read = batch_reader(files).read_all()
    assert read.num_rows == 503 and read.slice(0, 500).equals(preds)
    assert batch_reader(again.quarantine_files(again.manifests())).read_all().num_rows == 2
    if not root.is_local:
        assert str(files[0]).startswith("s3://")
        with pytest.raises(TypeError):
            os.fspath(files[0])  # never mistaken for a local path


def test_manifest_last_and_corrupt_chunk_refused(root: StagePath) -> None:
    stage = Stage(root / "run-b")
    preds, quarantine = _tables(200)
    manifest = stage.write(0, 201, preds, quarantine)
    pred_file, _, manifest_file = stage._paths(0)

    data = bytearray(pred_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    pred_file.write_bytes(bytes(data))
    assert Stage(stage.root).completed(0) is None  # refused: the chunk is redone
    assert stage.manifests() == []

    redone = stage.write(0, 201, preds, quarantine)
    assert redone == manifest and Stage(stage.root).completed(0) == manifest

    manifest_file.delete_file()  # a crash before the manifest: files without a manifest are not a chunk
    assert Stage(stage.root).completed(0) is None
    manifest_file.write_bytes(b"{not json")
    assert Stage(stage.root).completed(0) is None


def test_locks_exclusive_and_shared(root: StagePath) -> None:
    folder = root / "run-c"
    first, second = Stage(folder), Stage(folder)
    assert first.lock()
    assert not second.lock() and not second.lock(shared=True)
    first.unlock()
    assert first.lock(shared=True) and second.lock(shared=True)
    assert not Stage(folder).lock()  # exclusive while shared holders live
    first.unlock()
    second.unlock()
    assert Stage(folder).lock()


def test_cleanup_removes_stale_keeps_held_and_fresh(root: StagePath) -> None:
    day = root / "loan_default" / "2026-03-07"
    for name in ("stale", "held", "fresh"):
        Stage(day / name).write(0, 1, *_tables(1))
    held = Stage(day / "held")
    assert held.lock()
    assert remove_stale(day, time.time() - 3600) == []  # everything is newer than an hour ago

    removed = remove_stale(day, time.time() + 5, keep=day / "fresh")
    assert [f.name for f in removed] == ["stale"]
    assert Stage(day / "held").completed(0) is not None and Stage(day / "fresh").completed(0) is not None
    assert not (day / "stale").is_dir()

    held.unlock()
    removed = cleanup(root, older_than_s=-5)  # everything counts as old; nothing is held any more
    assert sorted(f.name for f in removed) == ["fresh", "held"]
    assert not [i for i in root.children(recursive=True) if i.type.name == "File"]


HOLDER = """
import sys, time
from scoring.config import ResultsConfig
from scoring.storage.stagefs import staging_root
from scoring.storage.staging import Stage
stage = Stage(staging_root(ResultsConfig(kind="duckdb", path="x.duckdb", staging_dir=sys.argv[1])) / sys.argv[2],
              lease_s=float(sys.argv[3]))
assert stage.lock()
print("locked", flush=True)
time.sleep(120)
"""


def test_holder_killed_with_sigkill(root: StagePath, tmp_path: Path) -> None:
    """A holder killed with SIGKILL: a local flock dies with it; an object-store lease keeps the folder for at
    most its lease time, then cleanup removes it."""
    lease_s = 4.0
    day = root / "m" / "d"
    Stage(day / "run").write(0, 1, *_tables(1))
    where = root.path if root.is_local else f"s3://{root.path}"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, where, "m/d/run", str(lease_s)],
                              stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert remove_stale(day, time.time() + 5, lease_s=lease_s) == []  # held by a live process
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    if root.is_local:
        assert [f.name for f in remove_stale(day, time.time() + 5, lease_s=lease_s)] == ["run"]
        return
    assert remove_stale(day, time.time() + 5, lease_s=lease_s) == []  # the lease is still fresh
    deadline = time.monotonic() + 3 * lease_s
    removed: list[StagePath] = []
    while not removed and time.monotonic() < deadline:
        time.sleep(0.5)
        removed = remove_stale(day, time.time() + 5, lease_s=lease_s)
    assert [f.name for f in removed] == ["run"]


@pytest.mark.parametrize(("value", "message"), [
    ("s3://AKIAXXXX:secret@bucket/prefix", "do not belong in the config file"),
    ("s3://bucket/prefix?secret_key=abc", "do not belong in the config file"),
    ("ftp://host/staging", "unsupported scheme 'ftp'"),
    ("s3:///prefix", "name a bucket"),
])
def test_config_refuses_credentials_and_unknown_uris(tmp_path: Path, value: str, message: str) -> None:
    path = write_config(tmp_path, tmp_path / "src.duckdb", tmp_path / "models", results={"staging_dir": value})
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_config_staging_dir_forms(tmp_path: Path) -> None:
    def staging(value: str):
        return load_config(write_config(tmp_path, tmp_path / "src.duckdb", tmp_path / "models",
                                        results={"staging_dir": value})).results.staging_dir

    assert staging("stage/here") == (tmp_path / "stage/here").resolve()  # relative to the config file
    assert staging(f"file://{tmp_path}/abs") == tmp_path / "abs"
    assert staging("s3://bucket/prefix?region=eu-west-1") == "s3://bucket/prefix?region=eu-west-1"


def test_cli_cleanup_on_s3(tmp_path: Path, s3_staging: str) -> None:
    from typer.testing import CliRunner

    from scoring.cli.app import app

    path = write_config(tmp_path, tmp_path / "src.duckdb", tmp_path / "models", results={"staging_dir": s3_staging})
    root = staging_root(load_config(path).results)
    Stage(root / "loan_default" / "2026-03-07" / "old").write(0, 1, *_tables(1))
    held = Stage(root / "loan_default" / "2026-03-07" / "held")
    held.write(0, 1, *_tables(1))
    assert held.lock()
    res = CliRunner().invoke(app, ["cleanup", "--config", str(path), "--older-than", "0s"])
    assert res.exit_code == 0, res.output
    assert "removed 1 staging folder(s) under s3://" in res.output
    assert not (root / "loan_default" / "2026-03-07" / "old").is_dir() and held.completed(0) is not None
    held.unlock()


def test_jobs_need_local_staging(tmp_path: Path) -> None:
    from scoring.run.job_runs import job_stage

    path = write_config(tmp_path, tmp_path / "src.duckdb", tmp_path / "models",
                        results={"staging_dir": "s3://bucket/staging"})
    with pytest.raises(ConfigError, match="scoring jobs needs a local results.staging_dir") as err:
        job_stage(load_config(path), "job-1")
    assert "\n" not in str(err.value)
