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
    from scoring.training import train_model

    folder = tmp_path_factory.mktemp("train")
    store = folder / "models"
    cfg = load_config(write_config(folder, sample_db, store))
    train_model(cfg, START, TRAIN_END)
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
