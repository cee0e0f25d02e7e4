"""An artifact is code: a pickle that imports anything outside the model-class allow-list is refused at
``models register`` (before it can run) and at run time when it replaced a registered artifact with an edited
sha256; with ``SCORING_MODEL_KEY`` an edited metadata is refused. A registration SIGKILLed at each step leaves
the store listing, showing and scoring its complete versions; ``models fsck --fix`` removes what is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.storage.checksums import sha256_file
from tests.conftest import SCORE_DAY
from tests.helpers import source_day

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
COLS = ["credit_score", "debt_to_income", "delinquencies"]


class Payload:
    """Unpickling this runs ``touch <marker>`` (what a malicious artifact would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _model_and_data(tmp_path: Path, sample_db: Path) -> tuple[Path, Path]:
    from sklearn.linear_model import LogisticRegression

    frame = source_day(sample_db, SCORE_DAY)
    model = LogisticRegression().fit(frame[COLS].fillna(0), frame["defaulted"])
    joblib.dump(model, tmp_path / "good.joblib")
    frame[[*COLS, "defaulted"]].fillna(0).to_parquet(tmp_path / "train.parquet")
    return tmp_path / "good.joblib", tmp_path / "train.parquet"


def _register(cfg_path: Path, artifact: Path, data: Path, *extra: str):
    return runner.invoke(app, ["models", "register", "--config", str(cfg_path), "--name", "loan_default",
                               "--artifact", str(artifact), "--training-data", str(data), "--label", "defaulted",
                               *extra])


def test_a_malicious_pickle_is_refused_at_registration_and_at_run_time(cfg_path: Path, store: Path,
                                                                        tmp_path: Path, sample_db: Path) -> None:
    good, data = _model_and_data(tmp_path, sample_db)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.joblib"
    joblib.dump({"model": joblib.load(good), "payload": Payload(marker)}, evil)
    res = _register(cfg_path, evil, data)
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert "posix.system" in res.output and "--trust" in res.output
    assert not marker.exists()
    assert sorted(p.name for p in (store / "loan_default").iterdir() if p.name.isdigit()) == ["1"]

    # Someone with write access to the store swaps the champion's artifact and fixes its sha256.
    version = store / "loan_default" / "1"
    meta = json.loads((version / "metadata.json").read_text())
    (version / "model.joblib").write_bytes(evil.read_bytes())
    meta["sha256"] = sha256_file(version / "model.joblib")
    (version / "metadata.json").write_text(json.dumps(meta))
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code != 0 and "posix.system" in res.output, res.output
    assert not marker.exists()


def test_with_a_key_edited_metadata_is_refused(cfg_path: Path, store: Path, tmp_path: Path, sample_db: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    good, data = _model_and_data(tmp_path, sample_db)
    monkeypatch.setenv("SCORING_MODEL_KEY", "a-secret-held-outside-the-store")
    # v1 is unsigned, so the promotion gate cannot evaluate the champion: moving the alias needs --force.
    res = _register(cfg_path, good, data, "--alias", "champion", "--force", "--reason", "v1 predates the key")
    assert res.exit_code == 0, res.output
    version = store / "loan_default" / "2"
    meta = json.loads((version / "metadata.json").read_text())
    assert meta["hmac_sha256"]
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    from sklearn.linear_model import LogisticRegression

    frame = source_day(sample_db, SCORE_DAY)
    joblib.dump(LogisticRegression(C=0.001).fit(frame[COLS].fillna(0), frame["defaulted"]), version / "model.joblib")
    meta["sha256"] = sha256_file(version / "model.joblib")
    (version / "metadata.json").write_text(json.dumps(meta))
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code != 0 and "signature does not match" in res.output, res.output
    # v1 was registered without the key: unsigned, refused while the key is set.
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY), "--version", "1"])
    assert res.exit_code != 0 and "not signed" in res.output, res.output


STEPS = ("register_reserved", "register_artifact_copied", "register_metadata_written", "register_renamed")


def test_a_registration_killed_at_each_step_leaves_a_usable_store(cfg_path: Path, store: Path, tmp_path: Path,
                                                                 sample_db: Path) -> None:
    good, data = _model_and_data(tmp_path, sample_db)
    # A SIGKILLed process cannot remove its temporary folders: keep them in this test's own folder, not /tmp.
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "TMPDIR": str(tmp_path / "tmp")}
    args = [sys.executable, "-m", "scoring.cli", "models", "register", "-c", str(cfg_path), "--name",
            "loan_default", "--artifact", str(good), "--training-data", str(data), "--label", "defaulted"]
    for step in STEPS:
        proc = subprocess.run(args, env={**env, "SCORING_FAULT": step}, cwd=ROOT, capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == -9, (step, proc.stderr[-2000:])
        for command in (["models", "list"], ["models", "show", "loan_default"]):
            res = runner.invoke(app, [*command, "--config", str(cfg_path)])
            assert res.exit_code == 0, (step, command, res.output)
    numbered = sorted(int(p.name) for p in (store / "loan_default").iterdir() if p.name.isdigit())
    # Only the registration killed after its rename produced a version (numbers reserved by the killed ones
    # are not reused until fsck removes their reservations).
    assert len(numbered) == 2 and numbered[0] == 1, numbered
    assert json.loads((store / "loan_default" / str(numbered[1]) / "metadata.json").read_text())["version"] \
        == numbered[1]

    # An older release left a version folder without metadata: listed runs skip it and name it.
    (store / "loan_default" / "9").mkdir()
    (store / "loan_default" / "9" / "model.joblib").write_bytes(b"half")
    res = runner.invoke(app, ["models", "list", "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["models", "fsck", "--config", str(cfg_path)])
    assert res.exit_code == 1 and "version 9 is incomplete" in res.output and ".build-" in res.output, res.output
    res = runner.invoke(app, ["models", "fsck", "--fix", "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    leftovers = [p.name for p in (store / "loan_default").iterdir() if p.name.startswith(".")]
    assert leftovers == [] and not (store / "loan_default" / "9").exists()
    res = runner.invoke(app, ["models", "fsck", "--config", str(cfg_path)])
    assert res.exit_code == 0 and "consistent" in res.output
    # The next registration takes the next free number.
    res = _register(cfg_path, good, data)
    assert res.exit_code == 0 and f"version {numbered[1] + 1}" in res.output, res.output


def test_models_compile_re_signs_the_metadata_it_changes(cfg_path: Path, store: Path, tmp_path: Path,
                                                          sample_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``models compile`` writes its ``compiled`` entry into a signed version's metadata: with
    ``SCORING_MODEL_KEY`` set the new metadata is signed again (the version still scores), and a version whose
    metadata was edited before the compile is refused, not re-signed (no laundering of an edited hash)."""
    good, data = _model_and_data(tmp_path, sample_db)
    monkeypatch.setenv("SCORING_MODEL_KEY", "a-secret-held-outside-the-store")
    res = _register(cfg_path, good, data, "--alias", "champion", "--force", "--reason", "v1 predates the key")
    assert res.exit_code == 0, res.output
    version = store / "loan_default" / "2"
    signed = json.loads((version / "metadata.json").read_text())["hmac_sha256"]
    res = runner.invoke(app, ["models", "compile", "loan_default", "2", "--config", str(cfg_path),
                              "--training-data", str(data)])
    assert res.exit_code == 0, res.output
    meta = json.loads((version / "metadata.json").read_text())
    assert meta["compiled"]["status"] == "not_compiled" and meta["hmac_sha256"] != signed
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output

    meta["sha256"] = "0" * 64  # edited by someone without the key
    (version / "metadata.json").write_text(json.dumps(meta))
    res = runner.invoke(app, ["models", "compile", "loan_default", "2", "--config", str(cfg_path),
                              "--training-data", str(data)])
    assert res.exit_code != 0 and "signature does not match" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert json.loads((version / "metadata.json").read_text())["sha256"] == "0" * 64
