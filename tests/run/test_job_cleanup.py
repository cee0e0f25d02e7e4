"""``scoring cleanup`` after killed job workers: a job SIGKILLed mid-scoring leaves staged chunks under
``<staging>/jobs/<job id>/``, one killed while writing ``--output`` leaves ``.<name>.<pid>.tmp`` beside the
output; ``cleanup --older-than 0s`` removes both (their processes are gone), keeps a queued job's folder, and
the output a later run writes is the model's own scores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.models.store import ModelStore
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import source_day

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _submit(cfg_path: Path, *args: str) -> str:
    res = runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), *args])
    assert res.exit_code == 0, res.output
    return res.stdout.strip().splitlines()[-1]


def _killed_worker(cfg_path: Path, fault: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SCORING_FAULT": fault}
    proc = subprocess.run([sys.executable, "-m", "scoring.cli", "jobs", "work", "--config", str(cfg_path),
                           "--max-jobs", "1"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]


def test_cleanup_removes_dead_jobs_staging_and_half_written_outputs(tmp_path: Path, sample_db: Path,
                                                                    store: Path) -> None:
    cfg_path = write_config(tmp_path, sample_db, store, chunking={"rows_per_chunk": 50})
    cfg = load_config(cfg_path)
    data = tmp_path / "day.parquet"
    source_day(sample_db, SCORE_DAY).to_parquet(data, index=False)
    scoring_job = _submit(cfg_path, "--input", str(data))
    output_job = _submit(cfg_path, "--input", str(data), "--output", "day_scores.parquet")
    _killed_worker(cfg_path, "after_chunk_3")
    _killed_worker(cfg_path, "before_output_rename")
    jobs_root = cfg.results.staging_dir / "jobs"
    assert (jobs_root / scoring_job).is_dir() and any((jobs_root / scoring_job).rglob("*.parquet"))
    assert (jobs_root / output_job).is_dir()
    tmp_files = list(cfg.jobs.output_dir.glob(".day_scores.parquet.*.tmp"))
    assert len(tmp_files) == 1 and not (cfg.jobs.output_dir / "day_scores.parquet").exists()
    queued = _submit(cfg_path, "--input", str(data))
    (jobs_root / queued).mkdir(parents=True)  # a queued job's folder (as a worker about to stage creates it)

    res = runner.invoke(app, ["cleanup", "--config", str(cfg_path), "--older-than", "0s"])
    assert res.exit_code == 0, res.output
    assert not (jobs_root / scoring_job).exists() and not (jobs_root / output_job).exists()
    assert not tmp_files[0].exists() and str(tmp_files[0]) in res.output.replace("\n", ""), res.output
    assert (jobs_root / queued).is_dir()
    for job in (scoring_job, output_job):
        row = runner.invoke(app, ["jobs", "status", job, "--config", str(cfg_path), "--json"])
        assert '"interrupted"' in row.stdout, row.stdout

    # A resubmitted output job writes the whole file: the model's own scores, nothing from the dead attempt.
    again = _submit(cfg_path, "--input", str(data), "--output", "day_scores.parquet", "--overwrite")
    res = runner.invoke(app, ["jobs", "work", "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    out = pq.read_table(cfg.jobs.output_dir / "day_scores.parquet").to_pandas()
    assert set(out["job_id"]) == {again} and len(out) == out["source_key"].nunique()
    model_store = ModelStore(cfg.model.store)
    model = model_store.load(model_store.resolve(cfg.model.name, "champion"))
    src = source_day(sample_db, SCORE_DAY)
    own = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
    assert max(abs(s - own[k]) for k, s in zip(out["source_key"], out["score"], strict=True)) <= 1e-9
    assert not list(cfg.jobs.output_dir.glob("*.tmp"))
