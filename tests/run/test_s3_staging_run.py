"""``scoring run`` with chunks staged on an S3-compatible object store (moto's server on a loopback port):
the published scores are the model's own, every row is scored or quarantined, and a retried run reuses
the chunks staged on the object store."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow.fs as pafs
import pytest
from typer.testing import CliRunner

from scoring.cli.app import app
from scoring.config import load_config
from scoring.models.store import ModelStore
from scoring.run import pipeline
from scoring.storage.results import duckdb_store
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, published, source_day


def _source_with_bad_keys(folder: Path, sample_db: Path) -> Path:
    """The sample with some keys NULL, which the gate quarantines."""
    db = folder / "src.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"ATTACH '{sample_db}' AS s (READ_ONLY)")
        con.execute("CREATE TABLE loan_applications AS SELECT * FROM s.loan_applications")
        con.execute("UPDATE loan_applications SET application_id = NULL WHERE application_id % 100 = 7")
    return db


def _staged_objects(s3_server, uri: str) -> list[str]:
    prefix = uri.removeprefix("s3://")
    infos = s3_server.filesystem().get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def _assert_scores_are_the_models(results: Path, db: Path, store: Path, rows_in: int, scored: int,
                                  rejected: int) -> None:
    src = source_day(db, SCORE_DAY)
    src = src[src["application_id"].notna()]
    model = ModelStore(store).load(ModelStore(store).get("loan_default", 1))
    expected = dict(zip(src["application_id"].astype(int).astype(str), model.predict_proba(src)[:, 1],
                        strict=True))
    out = published(results, SCORE_DAY)
    assert out["source_key"].is_unique and len(out) == len(src) == scored
    got = out.set_index("source_key")["score"]
    np.testing.assert_allclose(got.to_numpy(), [expected[k] for k in got.index], rtol=0, atol=1e-9)
    assert rows_in == scored + rejected == len(source_day(db, SCORE_DAY)) and rejected > 0
    with duckdb.connect(str(results), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == rejected


def test_cli_run_with_s3_staging(tmp_path: Path, sample_db: Path, store: Path, s3_server, s3_staging: str) -> None:
    db = _source_with_bad_keys(tmp_path, sample_db)
    path = write_config(tmp_path, db, store, results={"staging_dir": s3_staging}, workers=2)
    res = CliRunner().invoke(app, ["run", "--config", str(path), "--date", str(SCORE_DAY), "--rows-per-chunk", "97"])
    assert res.exit_code == 0, res.output
    cfg = load_config(path)
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success" and "\"rows_per_chunk\": 97" in row["details"]
    _assert_scores_are_the_models(cfg.results.path, db, store, row["rows_in"], row["rows_scored"],
                                  row["rows_rejected"])
    assert _staged_objects(s3_server, s3_staging) == []  # published: the staged chunks are gone
    assert not (tmp_path / "staging").exists()  # nothing went to a local folder


def test_retry_reuses_chunks_staged_on_s3(tmp_path: Path, sample_db: Path, store: Path, s3_server,
                                          s3_staging: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _source_with_bad_keys(tmp_path, sample_db)
    cfg = load_config(write_config(tmp_path, db, store, results={"staging_dir": s3_staging}))

    def boom(run) -> None:
        raise RuntimeError("injected crash before commit")

    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="injected"):
        patch.setattr(duckdb_store, "before_commit", boom)
        pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=97)
    staged = _staged_objects(s3_server, s3_staging)
    manifests = [p for p in staged if p.endswith(".json") and "/chunk-" in p]
    assert len(manifests) >= 4, staged  # several chunks, kept on the object store for the retry
    assert not any(".lease-" in p for p in staged)  # the failed run let go of its folder
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == 0

    result = pipeline.run_day(cfg, SCORE_DAY, rows_per_chunk=97)
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success" and f'"chunks_reused": {len(manifests)}' in row["details"], row["details"]
    _assert_scores_are_the_models(cfg.results.path, db, store, result.rows_in, result.rows_scored,
                                  result.rows_rejected)
    assert _staged_objects(s3_server, s3_staging) == []
