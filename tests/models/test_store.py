from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from scoring.errors import ModelStoreError
from scoring.models.store import METADATA, ModelStore


def test_metadata_has_schema_checksum_window_metrics_and_reference(store: Path) -> None:
    mv = ModelStore(store).resolve("loan_default", "champion")
    meta = mv.meta
    assert meta["name"] == "loan_default" and meta["version"] == 1
    assert len(meta["sha256"]) == 64 and meta["sklearn_version"]
    assert {f["name"] for f in meta["features"]} >= {"age", "state", "credit_score"}
    assert {"name": "state", "type": "string"} in meta["features"]
    assert meta["training_window"] == {"start": "2026-03-01", "end": "2026-03-05"}
    assert 0.5 < meta["metrics"]["roc_auc"] <= 1
    assert set(meta["reference"]["features"]) == {f["name"] for f in meta["features"]}
    assert abs(sum(meta["reference"]["score"]["shares"]) - 1) < 1e-9


def test_checksum_mismatch_is_refused_before_unpickling(store: Path) -> None:
    ms = ModelStore(store)
    mv = ms.get("loan_default", 1)
    with mv.artifact.open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelStoreError, match="checksum mismatch"):
        ms.load(mv)


def test_other_sklearn_minor_version_is_refused(store: Path) -> None:
    ms = ModelStore(store)
    path = ms.get("loan_default", 1).path / METADATA
    meta = json.loads(path.read_text())
    meta["sklearn_version"] = "0.24.2"
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelStoreError, match=r"saved with scikit-learn 0\.24\.2"):
        ms.load(ms.get("loan_default", 1))


def test_alias_history_answers_which_version_was_champion_on_a_day(store: Path) -> None:
    ms = ModelStore(store)
    mv1 = ms.get("loan_default", 1)
    mv2 = ms.register("loan_default", mv1.artifact, {"features": mv1.features})
    assert mv2.version == 2
    ms.set_alias("loan_default", "champion", 2, at=dt.datetime(2030, 1, 10, tzinfo=dt.UTC))
    assert ms.aliases("loan_default")["champion"] == 2
    assert ms.alias_at("loan_default", "champion", dt.datetime(2030, 1, 9)) == 1
    assert ms.alias_at("loan_default", "champion", dt.datetime(2030, 1, 11)) == 2
    assert ms.alias_at("loan_default", "champion", dt.datetime(2000, 1, 1)) is None
    assert [h["version"] for h in ms.history("loan_default")] == [1, 2]


def test_unknown_model_version_and_alias_errors_name_the_thing(store: Path) -> None:
    ms = ModelStore(store)
    with pytest.raises(ModelStoreError, match="unknown model 'nope'"):
        ms.resolve("nope", "champion")
    with pytest.raises(ModelStoreError, match="no version 9"):
        ms.get("loan_default", 9)
    with pytest.raises(ModelStoreError, match="no alias 'staging'"):
        ms.resolve("loan_default", "staging")
