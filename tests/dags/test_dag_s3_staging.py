"""The scoring DAG under ``dag.test()`` with chunks staged, the model store and its suites on an S3-compatible
object store (moto's server), whose endpoint and credentials come from an Airflow Connection
(``results.staging_connection_id``) only: the task processes have no ``AWS_*`` variable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from scoring.config import load_config
from scoring.models.store import ModelStore
from scoring.models.training import train_model
from scoring.quality.suite import write_version_suite
from scoring.storage.connections import ConnectionInfo, apply_connections
from scoring.storage.object_options import use_connection_options
from tests.conftest import SCORE_DAY, START, TRAIN_END, write_config
from tests.dags.airflow_env import airflow_db_template, airflow_env, run_days  # noqa: F401
from tests.helpers import ledger, published, source_day

SCHEDULE = {"start_date": "2026-03-01", "retries": 0, "retry_delay_s": 1, "task_timeout_min": 10}


def test_dag_stages_on_s3_through_a_connection(tmp_path: Path, sample_db: Path, s3_server,
                                               airflow_db_template: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setenv("SCORING_MODEL_CACHE", str(tmp_path / "cache-test"))

    prefix = "dag-run"
    store = s3_server.uri("dag-models")
    cfg = write_config(tmp_path, sample_db, store, schedule=SCHEDULE,  # type: ignore[arg-type]
                       results={"staging_dir": s3_server.uri(prefix), "staging_connection_id": "s3_staging"})
    # The model and its suite, registered on the object store through the same connection.
    connection = ConnectionInfo("s3_staging", "aws", login="testing", password="testing",
                                extra={"endpoint_url": s3_server.endpoint, "region_name": "us-east-1"})
    located = apply_connections(load_config(cfg), lambda _: connection)
    write_version_suite(located, train_model(located, START, TRAIN_END))
    model = ModelStore(store).load(ModelStore(store).get("loan_default", 1))
    use_connection_options(None)
    home = tmp_path / "airflow_home"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    env = airflow_env(home, [cfg], AIRFLOW_CONN_S3_STAGING=json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_server.endpoint, "region_name": "us-east-1"}}))
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}  # the connection alone locates the store
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["SCORING_MODEL_CACHE"] = str(tmp_path / "cache-tasks")
    [line] = run_days(env, [SCORE_DAY.isoformat()], conf={"rows_per_chunk": 150})
    assert line["state"] == "success", line
    assert sorted(k for k in line["tasks"] if k.startswith("score_chunk_")) == [f"score_chunk_{i}" for i in range(4)]

    results = tmp_path / "results.duckdb"
    src = source_day(sample_db, SCORE_DAY)
    expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
    out = published(results, SCORE_DAY)
    got = out.set_index("source_key")["score"]
    assert out["source_key"].is_unique and len(out) == len(src)
    np.testing.assert_allclose(got.to_numpy(), [expected[k] for k in got.index], rtol=0, atol=1e-9)
    row = ledger(results).iloc[-1]
    assert row["status"] == "success" and row["rows_in"] == row["rows_scored"] + row["rows_rejected"] == len(src)
    left = s3_server.filesystem().get_file_info(pafs.FileSelector(f"{s3_server.bucket}/{prefix}", recursive=True,
                                                                  allow_not_found=True))
    assert [i.path for i in left if i.type == pafs.FileType.File] == []  # published: staged chunks removed
    assert not (tmp_path / "results" / "staging").exists()
    assert not (tmp_path / "models").exists() and not (tmp_path / "schemas").exists()
    assert any((tmp_path / "cache-tasks").iterdir())  # the tasks fetched the model into their own cache
