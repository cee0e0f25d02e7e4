"""A store with two versions: v1 (hist gradient boosting, champion) and v2 (logistic regression,
alias ``challenger``), trained once per session on the sample's first days."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import START, TRAIN_END, write_config


@pytest.fixture(scope="session")
def two_version_store(tmp_path_factory: pytest.TempPathFactory, sample_db: Path, trained_store: Path) -> Path:
    from scoring.config import load_config
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    folder = tmp_path_factory.mktemp("two_versions")
    store = folder / "models"
    shutil.copytree(trained_store, store)
    cfg = load_config(write_config(folder, sample_db, store, training={"estimator": "logistic_regression"}))
    mv = train_model(cfg, START, TRAIN_END, aliases=["challenger"])
    write_version_suite(cfg, mv)
    return store


@pytest.fixture()
def store(tmp_path: Path, two_version_store: Path) -> Path:
    """A private copy of the two-version store (overrides the one-version store of tests/conftest.py)."""
    target = tmp_path / "models"
    shutil.copytree(two_version_store, target)
    return target
