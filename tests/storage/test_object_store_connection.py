"""The object-store connection (``results.staging_connection_id``, an Airflow Connection of type aws) locates
every object-store folder of the config, not only staging: with no ``AWS_*`` variable in the process, a model
trained here is registered into a model store on S3 (moto's server) with its suite next to it, and a day is
scored with its chunks staged there, all through the connection's credentials and endpoint."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from scoring.config import load_config
from scoring.errors import ConfigError
from scoring.models.store import ModelStore
from scoring.models.training import train_model
from scoring.quality.suite import write_version_suite
from scoring.run.backfill import backfill
from scoring.run.pipeline import run_day
from scoring.storage.connections import ConnectionInfo, apply_connections
from scoring.storage.object_options import connection_options
from scoring.storage.objects import location
from tests.conftest import SCORE_DAY, START, TRAIN_END, write_config
from tests.helpers import ledger, published, source_day
from tests.storage.s3_server import ACCESS_KEY, REGION, SECRET_KEY

CONNECTION = "object_store"


@pytest.fixture()
def no_aws_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing but a connection can give S3 clients credentials or an endpoint."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("SCORING_MODEL_CACHE", str(tmp_path / "cache"))


def _lookup(s3_server):
    def lookup(conn_id: str) -> ConnectionInfo:
        assert conn_id == CONNECTION
        return ConnectionInfo(conn_id, "aws", login=ACCESS_KEY, password=SECRET_KEY,
                              extra={"endpoint_url": s3_server.endpoint, "region_name": REGION})
    return lookup


def test_the_staging_connection_locates_the_model_store_and_suites(tmp_path: Path, sample_db: Path, s3_server,
                                                                   no_aws_environment: None) -> None:
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    store_uri = s3_server.uri(f"{prefix}/models")
    results = {"staging_dir": s3_server.uri(f"{prefix}/staging"), "staging_connection_id": CONNECTION}
    cfg = apply_connections(load_config(write_config(tmp_path, sample_db, store_uri, results=results)),
                            _lookup(s3_server))
    assert connection_options()["access_key"] == ACCESS_KEY

    mv = train_model(cfg, START, TRAIN_END)
    suite = write_version_suite(cfg, mv)
    assert str(suite) == f"{store_uri}/.suites/loan_default/v1.json"
    # On the server (listed with the test's own client); nothing under the local folder.
    listed = s3_server.filesystem().get_file_info(pafs.FileSelector(f"{s3_server.bucket}/{prefix}/models",
                                                                    recursive=True))
    names = {i.path.split("/models/", 1)[1] for i in listed if i.type == pafs.FileType.File}
    assert {"loan_default/1/model.joblib", "loan_default/1/metadata.json", ".suites/loan_default/v1.json"} <= names
    assert not (tmp_path / "models").exists()

    result = run_day(cfg, SCORE_DAY)
    src = source_day(sample_db, SCORE_DAY)
    model = ModelStore(cfg.model.store).load(mv)
    expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
    out = published(tmp_path / "results.duckdb", SCORE_DAY).set_index("source_key")
    assert out.index.is_unique and len(out) == result.rows_scored > 0
    np.testing.assert_allclose(out["score"].to_numpy(), [expected[k] for k in out.index], rtol=0, atol=1e-9)
    row = ledger(tmp_path / "results.duckdb").iloc[-1]
    assert row["status"] == "success" and row["model_version"] == mv.version
    assert row["rows_in"] == row["rows_scored"] + row["rows_rejected"] == len(src)
    staged = location(s3_server.uri(f"{prefix}/staging")).children(recursive=True)
    assert [i.path for i in staged if i.type == pafs.FileType.File] == []  # published: staged chunks removed

    # A config without the connection clears the options: the store is located from the URI and the (empty)
    # environment alone, without the connection's endpoint or keys.
    plain = tmp_path / "plain"
    plain.mkdir()
    apply_connections(load_config(write_config(plain, sample_db, store_uri)), _lookup(s3_server))
    assert connection_options() == {}
    options = dict(location(store_uri).fs.__reduce__()[1][0])
    assert not options.get("access_key") and not options.get("endpoint_override"), options


def test_the_model_store_connection_reaches_spawned_workers(tmp_path: Path, sample_db: Path, s3_server,
                                                            no_aws_environment: None) -> None:
    """``model.store_connection_id`` locates the model store on its own (staging is local; the staging
    connection names an endpoint where nothing listens, so a store that used it would fail), and the worker
    processes a run spawns (``workers: 2``, a parallel backfill's days) load the model through it too."""
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    store_uri = s3_server.uri(f"{prefix}/models")
    nowhere = ConnectionInfo("staging_elsewhere", "aws", login="x", password="y",
                             extra={"endpoint_url": "http://127.0.0.1:9", "region_name": REGION})

    def lookup(conn_id: str) -> ConnectionInfo:
        return nowhere if conn_id == "staging_elsewhere" else _lookup(s3_server)(conn_id)

    cfg = apply_connections(load_config(write_config(
        tmp_path, sample_db, store_uri, workers=2, chunking={"rows_per_chunk": 150},
        model={"store": store_uri, "name": "loan_default", "alias": "champion", "threshold": 0.5,
               "store_connection_id": CONNECTION},
        results={"staging_connection_id": "staging_elsewhere"})), lookup)
    assert connection_options()["endpoint_override"] == s3_server.endpoint
    mv = train_model(cfg, START, TRAIN_END)
    write_version_suite(cfg, mv)
    model = ModelStore(cfg.model.store).load(mv)

    result = run_day(cfg, SCORE_DAY)  # 4 chunks over 2 spawned worker processes
    days = backfill(cfg, SCORE_DAY - dt.timedelta(days=1), SCORE_DAY, parallel=2)  # a process per day
    assert [d.error for d in days] == [None, None], days
    out = published(tmp_path / "results.duckdb")
    for day in (SCORE_DAY - dt.timedelta(days=1), SCORE_DAY):
        src = source_day(sample_db, day)
        expected = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
        got = out[out["day"] == pd.Timestamp(day)].set_index("source_key")["score"]
        assert got.index.is_unique and len(got) > 0
        np.testing.assert_allclose(got.to_numpy(), [expected[k] for k in got.index], rtol=0, atol=1e-9)
    runs = ledger(tmp_path / "results.duckdb")
    assert list(runs["status"]) == ["success"] * 3 and result.rows_scored > 0
    assert (runs["rows_in"] == runs["rows_scored"] + runs["rows_rejected"]).all()


def test_a_store_connection_that_is_not_aws_is_refused_in_one_line(tmp_path: Path, sample_db: Path) -> None:
    """``model.store_connection_id`` naming a database connection (a config mistake, or a hostile one pointing
    the store at another service) is refused naming the setting, and sets no object-store options."""
    cfg = load_config(write_config(tmp_path, sample_db, tmp_path / "models",  # type: ignore[arg-type]
                                   model={"store": "s3://bucket/models", "name": "loan_default",
                                          "store_connection_id": "warehouse"}))
    postgres = ConnectionInfo("warehouse", "postgres", host="db.example", login="u", password="secret")
    with pytest.raises(ConfigError, match="^connection 'warehouse' has type 'postgres'; model.store_connection_id "
                                          "needs an aws connection$") as err:
        apply_connections(cfg, lambda _: postgres)
    assert "secret" not in str(err.value)
    assert connection_options() == {}
