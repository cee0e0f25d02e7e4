"""Custom code shipped with a model version: a Pipeline with the user's own transformer, fitted in a separate
process that imports the user's module through PYTHONPATH, then registered with ``code=`` and loaded here
and in spawned workers where that module is NOT on the path."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.errors import ModelStoreError
from scoring.models.code import code_on_path
from scoring.models.store import ModelStore, load_version
from scoring.run import chunks
from tests.conftest import write_config

TRANSFORMER = """\
from __future__ import annotations

{imports}import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

SCALE = 1.0  # a module constant: editing it would change the scores of a model that imports this file


class Winsorizer(BaseEstimator, TransformerMixin):
    def __init__(self, q=0.05):
        self.q = q

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        self.lo_ = np.quantile(X, self.q, axis=0)
        self.hi_ = np.quantile(X, 1 - self.q, axis=0)
        return self

    def transform(self, X):
        return {clip}(np.asarray(X, dtype=float), self.lo_, self.hi_) * SCALE
"""

FIT = """\
import sys

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from {module} import Winsorizer

out = sys.argv[1]
rng = np.random.default_rng(11)
X = pd.DataFrame({{"a": rng.standard_t(2, 400), "b": rng.normal(5, 2, 400), "c": rng.exponential(3, 400)}})
y = (X["a"].clip(-2, 2) + 0.3 * X["b"] - 0.2 * X["c"] + rng.normal(0, 1, 400) > 1.0).astype(int)
model = Pipeline([("winsorize", Winsorizer()), ("clf", LogisticRegression())]).fit(X, y)
joblib.dump(model, out + "/model.joblib")
X.iloc[:100].to_parquet(out + "/x.parquet")
np.save(out + "/proba.npy", model.predict_proba(X.iloc[:100]))
"""


@dataclass(frozen=True)
class Fitted:
    """A model fitted in a subprocess: its artifact, the user's code entry, rows and their expected scores."""

    name: str  # top-level module name
    entry: Path  # the .py file or the package folder, as the user would pass it
    artifact: Path
    x: pd.DataFrame
    proba: np.ndarray


def _write_module(src: Path, name: str, package: bool) -> Path:
    if not package:
        entry = src / f"{name}.py"
        entry.write_text(TRANSFORMER.format(imports="", clip="np.clip"))
        return entry
    entry = src / name
    entry.mkdir()
    (entry / "__init__.py").write_text("from .sub import Winsorizer\n")
    (entry / "helpers.py").write_text("import numpy as np\n\n\ndef clip(x, lo, hi):\n    return np.clip(x, lo, hi)\n")
    (entry / "sub.py").write_text(TRANSFORMER.format(imports="from .helpers import clip\n", clip="clip"))
    (entry / "__pycache__").mkdir()
    (entry / "__pycache__" / "junk.pyc").write_bytes(b"not copied")
    return entry


@pytest.fixture
def fit_user_model(tmp_path: Path) -> Iterator[Any]:
    """A factory: ``fit_user_model(package=False)`` -> Fitted, with a module name unique to the test.
    Afterwards the test's modules leave ``sys.modules`` and its folders leave ``sys.path``."""
    names: list[str] = []
    path_before = list(sys.path)

    def fit(package: bool = False) -> Fitted:
        name = f"usercode_{uuid.uuid4().hex[:10]}"
        names.append(name)
        src, out = tmp_path / f"src_{name}", tmp_path / f"fit_{name}"
        src.mkdir()
        out.mkdir()
        entry = _write_module(src, name, package)
        script = out / "fit.py"
        script.write_text(FIT.format(module=f"{name}.sub" if package else name))
        env = {**os.environ, "PYTHONPATH": str(src)}
        done = subprocess.run([sys.executable, str(script), str(out)], env=env, timeout=300, cwd=out,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return Fitted(name, entry, out / "model.joblib", pd.read_parquet(out / "x.parquet"),
                      np.load(out / "proba.npy"))

    yield fit
    for key in [k for k in sys.modules if any(k == n or k.startswith(n + ".") for n in names)]:
        del sys.modules[key]
    sys.path[:] = path_before


def _not_importable(name: str) -> None:
    assert name not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        __import__(name)


def _predict_in_worker(x: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Runs in a spawned worker after ``chunks._init_worker`` loaded the model through the store."""
    model = chunks._WORKER_MODEL
    module = sys.modules[type(model.steps[0][1]).__module__]
    return model.predict_proba(x), module.__file__


def test_registered_code_loads_without_pythonpath_here_and_in_spawned_workers(
        fit_user_model: Any, tmp_path: Path) -> None:
    fitted = fit_user_model()
    _not_importable(fitted.name)
    store = ModelStore(tmp_path / "store")
    mv = store.register("custom", fitted.artifact, {"features": []}, code=[fitted.entry])

    assert mv.code["modules"] == [fitted.name]
    assert list(mv.code["files"]) == [f"{fitted.name}.py"] and len(mv.code["files"][f"{fitted.name}.py"]) == 64
    assert json.loads((mv.path / "metadata.json").read_text())["code"] == mv.code
    assert (mv.path / "code" / f"{fitted.name}.py").read_text() == fitted.entry.read_text()

    path_before = list(sys.path)
    model = store.load(mv)
    assert sys.path == path_before  # restored; the module stays imported for the unpickled model
    assert Path(sys.modules[fitted.name].__file__) == (mv.path / "code" / f"{fitted.name}.py").resolve()
    assert np.max(np.abs(model.predict_proba(fitted.x) - fitted.proba)) <= 1e-12

    assert str(fitted.entry.parent) not in os.environ.get("PYTHONPATH", "")
    loader = functools.partial(load_version, store.root, "custom", mv.version)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=chunks._init_worker, initargs=(loader,)) as pool:
        proba, origin = pool.submit(_predict_in_worker, fitted.x).result(timeout=300)
    assert np.max(np.abs(proba - fitted.proba)) <= 1e-12
    assert Path(origin) == (mv.path / "code" / f"{fitted.name}.py").resolve()


def test_the_stored_copy_wins_over_an_edited_original_already_imported(fit_user_model: Any,
                                                                        tmp_path: Path) -> None:
    fitted = fit_user_model()
    store = ModelStore(tmp_path / "store")
    mv = store.register("custom", fitted.artifact, {"features": []}, code=[fitted.entry])
    # After registration the user edits their working copy and has it imported (as from their cwd).
    fitted.entry.write_text(fitted.entry.read_text().replace("SCALE = 1.0", "SCALE = 3.0"))
    sys.path.insert(0, str(fitted.entry.parent))
    edited = __import__(fitted.name)
    assert edited.SCALE == 3.0

    model = store.load(mv)
    assert sys.modules[fitted.name].SCALE == 1.0
    assert np.max(np.abs(model.predict_proba(fitted.x) - fitted.proba)) <= 1e-12


def test_a_package_folder_is_shipped_with_its_submodules_and_without_bytecode(fit_user_model: Any,
                                                                               tmp_path: Path) -> None:
    fitted = fit_user_model(package=True)
    _not_importable(fitted.name)
    store = ModelStore(tmp_path / "store")
    mv = store.register("custom", fitted.artifact, {"features": []}, code=[fitted.entry])
    assert mv.code["modules"] == [fitted.name]
    assert sorted(mv.code["files"]) == [f"{fitted.name}/{f}" for f in ("__init__.py", "helpers.py", "sub.py")]
    assert not (mv.path / "code" / fitted.name / "__pycache__" / "junk.pyc").exists()

    model = store.load(mv)
    assert type(model.steps[0][1]).__module__ == f"{fitted.name}.sub"
    assert Path(sys.modules[f"{fitted.name}.sub"].__file__).parent == (mv.path / "code" / fitted.name).resolve()
    assert np.max(np.abs(model.predict_proba(fitted.x) - fitted.proba)) <= 1e-12
    # Importing wrote bytecode under code/: that is no tampering.
    ModelStore(store.root).load(mv)

    cfg = write_config(tmp_path, tmp_path / "unused.duckdb", store.root)
    res = CliRunner().invoke(app, ["models", "show", "custom", "--version", "1", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert '"code"' in res.output and '"modules"' in res.output and f"{fitted.name}/sub.py" in res.output


def test_code_on_path_makes_the_users_sources_importable_for_registration(fit_user_model: Any) -> None:
    fitted = fit_user_model()
    path_before = list(sys.path)
    with code_on_path([fitted.entry]) as modules:
        assert modules == [fitted.name]
        assert sys.path[0] == str(fitted.entry.parent.resolve())
        model = joblib.load(fitted.artifact)
    assert sys.path == path_before
    assert np.max(np.abs(model.predict_proba(fitted.x) - fitted.proba)) <= 1e-12


def test_edited_or_added_code_in_the_store_is_refused_in_one_line(fit_user_model: Any, tmp_path: Path) -> None:
    fitted = fit_user_model(package=True)
    store = ModelStore(tmp_path / "store")
    mv = store.register("custom", fitted.artifact, {"features": []}, code=[fitted.entry])
    sub = mv.path / "code" / fitted.name / "sub.py"
    original = sub.read_text()

    sub.write_text(original.replace("SCALE = 1.0", "SCALE = 2.0"))
    with pytest.raises(ModelStoreError) as err:
        store.load(mv)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(
        f"model custom v1: custom code file 'code/{fitted.name}/sub.py' changed since registration (sha256 ")
    assert str(err.value).endswith("); register a new version")
    assert fitted.name not in sys.modules  # refused before anything was imported

    sub.write_text(original)
    (mv.path / "code" / "stray.py").write_text("x = 1\n")
    with pytest.raises(ModelStoreError, match=r"custom code file 'code/stray\.py' was added after registration"):
        store.load(mv)
    (mv.path / "code" / "stray.py").unlink()
    (mv.path / "code" / fitted.name / "extra.py").write_text("x = 1\n")
    with pytest.raises(ModelStoreError, match=rf"'code/{fitted.name}/extra\.py' was added"):
        store.load(mv)
    (mv.path / "code" / fitted.name / "extra.py").unlink()
    sub.unlink()
    with pytest.raises(ModelStoreError, match=rf"'code/{fitted.name}/sub\.py' is missing"):
        store.load(mv)


def test_registration_mistakes_are_refused_before_a_version_is_taken(fit_user_model: Any, tmp_path: Path) -> None:
    fitted = fit_user_model()
    store = ModelStore(tmp_path / "store")
    text = tmp_path / "notes.txt"
    text.write_text("x")
    plain = tmp_path / "plain_folder"
    plain.mkdir()
    (plain / "m.py").write_text("x = 1\n")
    twin = tmp_path / "other" / f"{fitted.name}.py"
    twin.parent.mkdir()
    twin.write_text("x = 1\n")
    cases = {
        "not found": [tmp_path / "missing.py"],
        "is not a .py file or a package folder": [text],
        r"is not a package \(it has no __init__\.py\)": [plain],
        f"are both module '{fitted.name}'": [fitted.entry, twin],
        "would shadow the standard-library module 'json'": [_touch(tmp_path / "std" / "json.py")],
        "would shadow the installed module 'sklearn'": [_touch(tmp_path / "inst" / "sklearn.py")],
    }
    for message, code in cases.items():
        with pytest.raises(ModelStoreError, match=message) as err:
            store.register("custom", fitted.artifact, {"features": []}, code=code)
        assert "\n" not in str(err.value)
    assert not (store.root / "custom").exists() or store.versions("custom") == []


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x = 1\n")
    return path
