"""Shared fixtures: a small real sample source in DuckDB and a model trained on it, once per session."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
import yaml

from sample_data.generate import generate

START = dt.date(2026, 3, 1)
DAYS = 8
ROWS = 600
TRAIN_END = dt.date(2026, 3, 5)
SCORE_DAY = dt.date(2026, 3, 7)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# OpenMP (scikit-learn's HistGradientBoosting, LightGBM) busy-waits for its threads: on a loaded 2-core machine
# training a 5,000-row model took over 15 minutes with one thread per core. One thread each keeps the suite
# usable beside other work; subprocesses inherit it. Results do not depend on it (each test compares a model
# with its own output).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def write_config(folder: Path, source_db: Path, store: Path, **overrides: object) -> Path:
    """A config file in ``folder`` pointing at ``source_db`` and ``store``; ``overrides`` patch sections."""
    raw: dict = {
        "source": {"kind": "duckdb", "path": str(source_db), "table": "loan_applications",
                   "timestamp_column": "applied_at", "key_column": "application_id"},
        "model": {"store": str(store), "name": "loan_default", "alias": "champion", "threshold": 0.5},
        "results": {"kind": "duckdb", "path": str(folder / "results.duckdb"), "table": "predictions",
                    "staging_dir": str(folder / "staging")},
        "chunking": {"memory_budget_mib": 64},
        "workers": 1,
        "training": {
            "label_column": "defaulted",
            "numeric": {"age": {"min": 18, "max": 120}, "annual_income": {"min": 0}, "loan_amount": {"min": 0},
                        "credit_score": {"min": 300, "max": 850}, "debt_to_income": {"min": 0, "max": 100},
                        "employment_years": {"min": 0, "max": 80}, "open_accounts": {"min": 0},
                        "delinquencies": {"min": 0}},
            "categorical": ["state", "loan_purpose", "home_ownership", "employment_type"],
            "estimator": "hist_gradient_boosting",
        },
        # The suite's tests count the sample's days as clean (600 scored): keep the earlier min/max range rule
        # here; tests/quality/test_range_rules.py checks the default (percentiles + domain bounds) on the sample.
        "validation": {"range_rule": "minmax"},
    }
    for section, patch in overrides.items():
        if isinstance(patch, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **patch}
        else:
            raw[section] = patch
    path = folder / "scoring.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "sample.duckdb"
    generate(path, START, DAYS, ROWS, seed=7)
    return path


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory, sample_db: Path) -> Path:
    """A model store with loan_default v1 trained on the first days of the sample (champion)."""
    from scoring.config import load_config
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    folder = tmp_path_factory.mktemp("train")
    store = folder / "models"
    cfg = load_config(write_config(folder, sample_db, store))
    mv = train_model(cfg, START, TRAIN_END)
    write_version_suite(cfg, mv)
    return store


@pytest.fixture()
def store(tmp_path: Path, trained_store: Path) -> Path:
    """A private copy of the trained store, so a test may add versions or corrupt files."""
    target = tmp_path / "models"
    shutil.copytree(trained_store, target)
    return target


@pytest.fixture()
def cfg_path(tmp_path: Path, sample_db: Path, store: Path) -> Path:
    return write_config(tmp_path, sample_db, store)


@pytest.fixture()
def cfg(cfg_path: Path):
    from scoring.config import load_config

    return load_config(cfg_path)


# --- PostgreSQL (tests marked `postgres`): the server on 127.0.0.1:5432, database `test`, user `postgres`.
PG_URL = os.environ.get("SCORING_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOWTO = ("start one with: docker run -d --name scoring-pg -p 5432:5432 -e POSTGRES_DB=test "
            "-e POSTGRES_HOST_AUTH_METHOD=trust postgres:16  (or set SCORING_TEST_PG_URL)")


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The test server's URL; a missing server fails the suite under CI=true and skips it elsewhere."""
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=5).close()
    except psycopg.Error as exc:
        reason = f"PostgreSQL not reachable at {PG_URL} ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(f"{reason}; {PG_HOWTO}")
    return PG_URL


@pytest.fixture()
def pg_schema(pg_url: str) -> str:
    """A throwaway schema name for one test; it and any ``<name>_*`` schema are dropped afterwards."""
    import uuid

    import psycopg
    from psycopg import sql

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(pg_url, autocommit=True) as con:
        found = con.execute("SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
                            [name, name + "\\_%"]).fetchall()
        for (schema,) in found:
            con.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# --- S3-compatible staging (moto's standalone server, tests/storage/s3_server.py), one per session.
@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server on a free loopback port with bucket ``staging``; stopped by pid at the end."""
    from tests.storage.s3_server import start_s3_server

    server = start_s3_server(log=tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture()
def s3_staging(s3_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://staging/<test>`` staging URI; the AWS_* environment points clients at the server."""
    import uuid

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.uri(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture(autouse=True)
def _no_object_store_connection():
    """Each test starts and ends without the process-wide object-store connection options that
    ``apply_connections`` sets (``results.staging_connection_id``)."""
    from scoring.storage.object_options import use_connection_options

    use_connection_options(None)
    yield
    use_connection_options(None)
