"""A job whose ``--output --overwrite`` replaces an earlier job's file says what it removed: the keys the file
held that the new output does not, split into those this job quarantined (a replayed key) and those its input
no longer has, in the job's ``details.replaced`` (and a warning). End to end through ``scoring jobs``; the new
file holds the model's own scores."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.models.store import ModelStore
from tests.conftest import SCORE_DAY
from tests.helpers import source_day

runner = CliRunner()


def _job(cfg_path: Path, *args: str) -> dict:
    res = runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), "--wait", "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_an_output_replacing_an_earlier_file_says_what_it_removed(tmp_path: Path, cfg_path: Path,
                                                                  sample_db: Path) -> None:
    cfg = load_config(cfg_path)
    day = source_day(sample_db, SCORE_DAY)
    first_in, second_in = tmp_path / "all.parquet", tmp_path / "fewer.parquet"
    day.to_parquet(first_in, index=False)
    dropped = day.iloc[:10]
    replayed = day.iloc[[20]]  # delivered twice: quarantined as a duplicate key
    pd.concat([day.iloc[10:], replayed]).to_parquet(second_in, index=False)

    first = _job(cfg_path, "--input", str(first_in), "--output", "scores.parquet")
    assert first["state"] == "succeeded" and "replaced" not in (first.get("details") or {}), first
    second = _job(cfg_path, "--input", str(second_in), "--output", "scores.parquet", "--overwrite")
    assert second["state"] == "succeeded", second
    before = first["rows_scored"]
    replaced = second["details"]["replaced"]
    assert replaced["output"] == str(cfg.jobs.output_dir / "scores.parquet")
    assert replaced["predictions_before"] == before
    assert replaced["removed_quarantined"] == 1 and replaced["removed_from_source"] == 10
    assert replaced["removed"] == 11 and set(replaced["sample"]) == {
        *dropped["application_id"].astype(str), str(replayed["application_id"].iloc[0])}

    out = pq.read_table(cfg.jobs.output_dir / "scores.parquet").to_pandas()
    assert set(out["job_id"]) == {second["job_id"]} and len(out) == second["rows_scored"]
    assert second["rows_in"] == second["rows_scored"] + second["rows_quarantined"]
    store = ModelStore(cfg.model.store)
    model = store.load(store.resolve(cfg.model.name, "champion"))
    own = dict(zip(day["application_id"].astype(str), model.predict_proba(day)[:, 1], strict=True))
    assert max(abs(s - own[k]) for k, s in zip(out["source_key"], out["score"], strict=True)) <= 1e-9
