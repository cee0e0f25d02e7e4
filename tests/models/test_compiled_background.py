"""Issue 26: compiles within a time budget, in a process of their own, in the foreground or the background;
signed metadata stays signed when the compile records its outcome.

The models are the sample model (trained once per session) and a small HGB trained here; every compiled
output is compared bit for bit with the model's own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from scoring.errors import ModelStoreError
from scoring.models.compiled import predictor_for
from scoring.models.compiled.background import LOG_FILE, ROWS_FILE, compile_within, start_background
from scoring.models.compiled.predictor import CompiledModel
from scoring.models.registry import register_model
from scoring.models.store import ModelStore
from scoring.models.trust import KEY_ENV
from tests.models.test_compiled import CATEGORICAL, EXCLUDE, RANGES, _training

WAIT_S = 600  # the longest the background test waits for the compile to record its outcome


@pytest.fixture()
def models(tmp_path: Path, trained_store: Path) -> ModelStore:
    root = tmp_path / "models"
    shutil.copytree(trained_store, root)
    return ModelStore(root)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


def test_a_compile_past_its_budget_is_stopped_and_runs_stay_native(models: ModelStore, sample_db: Path) -> None:
    store = models
    mv = store.get("loan_default", 1)
    entry = compile_within(store.root, mv, _training(sample_db), budget_s=0.5)
    assert entry == {"status": "not_compiled", "reason": entry["reason"]}
    assert entry["reason"].startswith("compile budget of 0.5 s spent")
    assert not list(mv.path.glob(".compiling-*")) and not (mv.path / ROWS_FILE).exists()
    assert not (mv.path / "compiled").exists()
    model, details = predictor_for(store, store.get("loan_default", 1), "compiled")
    assert details["engine"] == "native" and details["fallback"] == entry["reason"]
    assert not isinstance(model, CompiledModel)


def test_background_compile_returns_at_once_and_runs_use_it_once_proven(models: ModelStore,
                                                                         sample_db: Path) -> None:
    store = models
    mv = store.get("loan_default", 1)
    frame = _training(sample_db)
    pid = start_background(store.root, mv, frame, budget_s=WAIT_S)
    done = False
    try:
        entry = store.get("loan_default", 1).meta["compiled"]
        assert entry["status"] == "compiling" and entry["budget_s"] == WAIT_S
        _, details = predictor_for(store, store.get("loan_default", 1), "auto")
        assert details["engine"] == "native" and details["fallback"].startswith("compile in progress since")
        deadline = time.monotonic() + WAIT_S + 60
        while time.monotonic() < deadline and not done:
            done = os.waitpid(pid, os.WNOHANG)[0] == pid
            time.sleep(0.5)
    finally:
        if not done:  # the bounded wait ran out (or an assertion failed): stop the supervisor's group
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    entry = store.get("loan_default", 1).meta["compiled"]
    assert entry["status"] == "proven", (entry, (mv.path / LOG_FILE).read_text()[-2000:])
    assert not (mv.path / ROWS_FILE).exists()
    model, details = predictor_for(store, store.get("loan_default", 1), "auto")
    assert details["engine"] == "compiled" and isinstance(model, CompiledModel)
    native = store.load(store.get("loan_default", 1))
    rows = frame[list(native.feature_names_in_)]
    assert _same_bits(model.predict_proba(rows), native.predict_proba(rows))


def test_a_compile_re_signs_signed_metadata(tmp_path: Path, sample_db: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With SCORING_MODEL_KEY set, the compile's outcome is signed with the rest of the metadata: the version
    still loads, and an edit of the compiled entry by hand is refused."""
    from features import build_model

    monkeypatch.setenv(KEY_ENV, "a test key")
    frame = _training(sample_db)
    model = build_model(RANGES, CATEGORICAL, HistGradientBoostingClassifier(max_iter=10, random_state=0))
    model.fit(frame[[*RANGES, *CATEGORICAL]], frame["defaulted"].astype(int))
    joblib.dump(model, tmp_path / "m.joblib")
    store = ModelStore(tmp_path / "models")
    mv = register_model(store, "signed", tmp_path / "m.joblib", frame, exclude=EXCLUDE, aliases=["champion"])
    assert mv.meta["hmac_sha256"]
    entry = compile_within(store.root, mv, frame, budget_s=WAIT_S)
    assert entry["status"] == "proven", (entry, (mv.path / LOG_FILE).read_text()[-2000:])
    signed = store.get("signed", 1)
    assert signed.meta["hmac_sha256"] != mv.meta["hmac_sha256"]
    compiled, details = predictor_for(store, signed, "auto")  # loads: the signature holds
    assert details["engine"] == "compiled"
    rows = frame[[*RANGES, *CATEGORICAL]]
    assert _same_bits(compiled.predict_proba(rows), model.predict_proba(rows))
    meta = json.loads((signed.path / "metadata.json").read_text())
    meta["compiled"]["sha256"] = "0" * 64
    (signed.path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelStoreError, match="signature does not match"):
        store.load(store.get("signed", 1))


def test_cli_compile_background_returns_with_the_pid_and_the_outcome_is_recorded(cfg_path: Path) -> None:
    """``scoring models compile --background`` (what ``register --compile`` does by default) returns at once
    naming the supervising process; the version is proven when it ends."""
    import re

    from typer.testing import CliRunner

    from scoring.cli import app

    store = ModelStore(cfg_path.parent / "models")
    assert (store.root / "loan_default" / "1").is_dir()
    res = CliRunner().invoke(app, ["models", "compile", "loan_default", "1", "--background",
                                   "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    found = re.search(r"in the background \(pid (\d+), budget 1800 s\)", res.output)
    assert found, res.output
    pid = int(found.group(1))
    done = False
    try:
        assert store.get("loan_default", 1).meta["compiled"]["status"] == "compiling"
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not done:
            done = os.waitpid(pid, os.WNOHANG)[0] == pid
            time.sleep(0.5)
    finally:
        if not done:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert store.get("loan_default", 1).meta["compiled"]["status"] == "proven"


def test_a_signed_version_is_not_changed_without_the_key(tmp_path: Path, sample_db: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Recording a compile on a signed version without SCORING_MODEL_KEY would leave a stale signature: it is
    refused in one line, and the metadata is left as it was."""
    monkeypatch.setenv(KEY_ENV, "a test key")
    frame = _training(sample_db)
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(frame[list(RANGES)],
                                                                           frame["defaulted"].astype(int))
    joblib.dump(model, tmp_path / "m.joblib")
    store = ModelStore(tmp_path / "models")
    mv = register_model(store, "signed", tmp_path / "m.joblib", frame, exclude=EXCLUDE, aliases=["champion"])
    before = (mv.path / "metadata.json").read_text()
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ModelStoreError, match=f"is signed: set {KEY_ENV}"):
        store.update_meta(mv, "compiled", {"status": "not_compiled", "reason": "x"})
    assert (mv.path / "metadata.json").read_text() == before
