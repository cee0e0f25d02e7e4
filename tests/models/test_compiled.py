"""Compiled scoring (issue 26): proven bit-identical before use, re-checked at load, native otherwise.

Models are trained here on the sample data; every published score is compared bit for bit with the model's
own output on the source rows, and the ledger's ``details.engine`` says which engine scored and why.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pandas as pd
import pytest

from scoring.config import load_config
from scoring.models.compiled import compile_version, predictor_for
from scoring.models.compiled.hgb import CompiledTrees, HGBCompiler
from scoring.models.compiled.threads import cgroup_cores, threads_per_worker
from scoring.models.registry import register_model
from scoring.models.store import ModelStore
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, START, TRAIN_END, write_config
from tests.helpers import ledger, published, source_day

RANGES = {"age": (18, 120), "annual_income": (0, None), "loan_amount": (0, None), "credit_score": (300, 850),
          "debt_to_income": (0, 100), "employment_years": (0, 80), "open_accounts": (0, None),
          "delinquencies": (0, None)}
CATEGORICAL = ["state", "loan_purpose", "home_ownership", "employment_type"]
EXCLUDE = {"application_id", "applied_at", "defaulted"}


class Float32Thresholds(HGBCompiler):
    """An inexact compiler: thresholds rounded to float32 (what float32 converters do)."""

    def threshold(self, value: float) -> float:
        return float(np.float32(value))


def _training(sample_db: Path) -> pd.DataFrame:
    with duckdb.connect(str(sample_db), read_only=True) as con:
        return con.sql("SELECT * FROM loan_applications WHERE applied_at >= $1 AND applied_at < $2",
                       params=[dt.datetime.combine(START, dt.time()),
                               dt.datetime.combine(TRAIN_END + dt.timedelta(days=1), dt.time())]).to_df()


@pytest.fixture(scope="module")
def compiled_root(tmp_path_factory: pytest.TempPathFactory, trained_store: Path, sample_db: Path) -> Path:
    """loan_default v1 (HGB classifier Pipeline) and loan_reg v1 (HGB regressor Pipeline), both compiled."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from features import build_model

    root = tmp_path_factory.mktemp("compiled") / "models"
    shutil.copytree(trained_store, root)
    store = ModelStore(root)
    frame = _training(sample_db)
    assert compile_version(store, store.get("loan_default", 1), frame)["status"] == "proven"
    features = [*RANGES, *CATEGORICAL]
    reg = build_model(RANGES, CATEGORICAL, HistGradientBoostingRegressor(max_iter=40, random_state=0))
    reg.fit(frame[features], frame["annual_income"].fillna(0) / 1000 + frame["defaulted"])
    artifact = root.parent / "reg.joblib"
    joblib.dump(reg, artifact)
    mv = register_model(store, "loan_reg", artifact, frame, exclude=EXCLUDE, aliases=["champion"])
    assert compile_version(store, mv, frame)["status"] == "proven"
    return root


@pytest.fixture()
def root(tmp_path: Path, compiled_root: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(compiled_root, target)
    return target


def _run(tmp_path: Path, sample_db: Path, root: Path, name: str = "loan_default", engine: str = "auto"):
    cfg = load_config(write_config(tmp_path, sample_db, root, model={"name": name},
                                   scoring={"engine": engine}, chunking={"rows_per_chunk": 150}))
    result = pipeline.run_day(cfg, SCORE_DAY)
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success"
    assert row["rows_in"] == row["rows_scored"] + row["rows_rejected"]
    return cfg, result, json.loads(row["details"])["engine"]


def _assert_bit_identical(cfg, root: Path, sample_db: Path, name: str = "loan_default") -> None:
    """Every published score equals the model's own output on its source row, bit for bit."""
    store = ModelStore(root)
    model = store.load(store.get(name, 1))
    src = source_day(sample_db, SCORE_DAY)
    inputs = src[list(model.feature_names_in_)]
    own = model.predict_proba(inputs)[:, 1] if hasattr(model, "predict_proba") else model.predict(inputs)
    expected = dict(zip(src["application_id"].astype(str), own, strict=True))
    out = published(cfg.results.path, SCORE_DAY)
    assert len(out) == len(src) > 100
    got = out["score"].to_numpy(dtype=np.float64)
    want = np.array([expected[k] for k in out["source_key"]], dtype=np.float64)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))


def test_proven_hgb_classifier_scores_a_day_bit_identical(tmp_path: Path, sample_db: Path, root: Path) -> None:
    entry = ModelStore(root).get("loan_default", 1).meta["compiled"]
    assert entry["status"] == "proven"
    assert entry["proof"]["rows"]["split_thresholds"] > 1000 and entry["proof"]["rows"]["category_levels"] > 10
    assert entry["compiler"]["tl2cgen"] and "-ffp-contract=off" in entry["compiler"]["flags"]
    from scoring.storage.checksums import sha256_file

    assert sha256_file(root / "loan_default" / "1" / entry["artifact"]) == entry["sha256"]
    assert entry["preprocess"]["engine"] == "numpy" and entry["preprocess"]["rows"]["edge_values"] > 50
    cfg, _, engine = _run(tmp_path, sample_db, root)
    assert engine["engine"] == "compiled" and "fallback" not in engine and engine["preprocess"] == "numpy"
    _assert_bit_identical(cfg, root, sample_db)


def test_proven_hgb_regressor_scores_a_day_bit_identical(tmp_path: Path, sample_db: Path, root: Path) -> None:
    cfg, _, engine = _run(tmp_path, sample_db, root, name="loan_reg")
    assert engine["engine"] == "compiled" and engine["preprocess"] == "numpy"
    _assert_bit_identical(cfg, root, sample_db, name="loan_reg")


def test_a_chunk_scored_in_blocks_is_bit_identical(tmp_path: Path, sample_db: Path, root: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled predictor preprocesses and scores a chunk in blocks of rows (its peak memory is a block's,
    not the chunk's): a day in chunks of 150 rows and blocks of 37 publishes the model's own scores."""
    from scoring.models.compiled import predictor

    monkeypatch.setattr(predictor, "BLOCK_ROWS", 37)
    for name in ("loan_default", "loan_reg"):
        (tmp_path / name).mkdir()
        cfg, _, engine = _run(tmp_path / name, sample_db, root, name=name)
        assert engine["engine"] == "compiled" and engine["preprocess"] == "numpy"
        _assert_bit_identical(cfg, root, sample_db, name=name)


def test_native_engine_is_used_when_configured(tmp_path: Path, sample_db: Path, root: Path) -> None:
    cfg, _, engine = _run(tmp_path, sample_db, root, engine="native")
    assert engine == {"requested": "native", "threads": threads_per_worker(1), "engine": "native"}
    _assert_bit_identical(cfg, root, sample_db)


def test_float32_threshold_compiler_is_refused_and_the_day_scored_natively(
        tmp_path: Path, sample_db: Path, root: Path) -> None:
    store = ModelStore(root)
    entry = compile_version(store, store.get("loan_default", 1), _training(sample_db), compiler=Float32Thresholds())
    assert entry["status"] == "refused"
    assert "row" in entry["first_difference"] and "native" in entry["first_difference"]
    assert not (root / "loan_default" / "1" / "compiled").exists()
    cfg, _, engine = _run(tmp_path, sample_db, root, engine="compiled")
    assert engine["engine"] == "native" and "refused at compile" in engine["fallback"]
    _assert_bit_identical(cfg, root, sample_db)


def test_changed_compiler_version_falls_back_and_the_ledger_says_so(
        tmp_path: Path, sample_db: Path, root: Path) -> None:
    store = ModelStore(root)
    mv = store.get("loan_default", 1)
    entry = mv.meta["compiled"]
    store.update_meta(mv, "compiled", {**entry, "compiler": {**entry["compiler"], "tl2cgen": "0.0.1"}})
    cfg, _, engine = _run(tmp_path, sample_db, root)
    assert engine["engine"] == "native" and "tl2cgen 0.0.1 ->" in engine["fallback"]
    _assert_bit_identical(cfg, root, sample_db)


def test_failed_load_recheck_falls_back_and_the_ledger_says_so(tmp_path: Path, sample_db: Path, root: Path) -> None:
    """A library that scores differently in this process (here: float32 thresholds, checksum updated, as a
    different CPU or maths library would) is caught by the re-check on the stored sample."""
    from scoring.models.compiled.predictor import split_model
    from scoring.storage.checksums import sha256_file

    store = ModelStore(root)
    mv = store.get("loan_default", 1)
    _, estimator = split_model(store.load(mv))
    other = Float32Thresholds().compile(estimator, tmp_path / "other", threads=1)
    library = root / "loan_default" / "1" / mv.meta["compiled"]["artifact"]
    shutil.copyfile(other, library)
    store.update_meta(mv, "compiled", {**mv.meta["compiled"], "sha256": sha256_file(library)})
    cfg, _, engine = _run(tmp_path, sample_db, root)
    assert engine["engine"] == "native" and engine["fallback"].startswith("load re-check failed: recheck_")
    _assert_bit_identical(cfg, root, sample_db)


def test_modified_artifact_falls_back(root: Path) -> None:
    store = ModelStore(root)
    mv = store.get("loan_default", 1)
    (root / "loan_default" / "1" / mv.meta["compiled"]["artifact"]).write_bytes(b"not a library")
    model, details = predictor_for(store, mv, "auto")
    assert details["engine"] == "native" and "missing or modified" in details["fallback"]
    assert type(model).__name__ == "Pipeline"


def test_xgboost_is_scored_natively(tmp_path: Path, sample_db: Path, root: Path) -> None:
    from xgboost import XGBClassifier

    frame = _training(sample_db)
    numeric = list(RANGES)
    model = XGBClassifier(n_estimators=20, max_depth=3, tree_method="hist", n_jobs=1, random_state=0)
    model.fit(frame[numeric], frame["defaulted"])
    artifact = tmp_path / "xgb.joblib"
    joblib.dump(model, artifact)
    store = ModelStore(root)
    mv = register_model(store, "loan_xgb", artifact, frame, exclude=EXCLUDE, aliases=["champion"])
    entry = compile_version(store, mv, frame)
    assert entry["status"] == "not_compiled" and "XGBClassifier keeps its own predict" in entry["reason"]
    cfg, _, engine = _run(tmp_path, sample_db, root, name="loan_xgb", engine="compiled")
    assert engine["engine"] == "native" and "XGBClassifier" in engine["fallback"]
    _assert_bit_identical(cfg, root, sample_db, name="loan_xgb")


def test_a_value_whose_low_32_bits_are_all_ones_is_not_read_as_missing(tmp_path: Path) -> None:
    """TL2cgen's own test of a present value misreads 0.49999999999999994 (0x3FDFFFFFFFFFFFFF) as missing;
    the patched code does not."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(400, 1)).astype(np.float64)
    model = HistGradientBoostingRegressor(max_iter=3).fit(x, x[:, 0] * 10 + rng.normal(size=400))
    assert model._predictors[0][0].nodes["num_threshold"][0] == 0.5
    trees = CompiledTrees(HGBCompiler().compile(model, tmp_path, threads=1), threads=1)
    probe = np.array([[np.nextafter(0.5, 0.0)], [0.5], [np.nextafter(0.5, 1.0)], [np.nan]])
    assert int(probe[0, 0].view(np.uint64)) & 0xFFFFFFFF == 0xFFFFFFFF
    assert np.array_equal(trees.raw(probe), model._raw_predict(probe))


def test_rows_are_scored_block_by_block_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled code takes a chunk in blocks of BLOCK_ROWS rows (bounding its copies): blocks with and
    without missing values give the model's own raw sums bit for bit, and -DBL_MAX in a later block still
    refuses the whole call (the predictor then scores that block with the model's own trees)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from scoring.models.compiled import hgb

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 3))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = rng.integers(0, 3, size=1000)
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y)
    trees = CompiledTrees(HGBCompiler().compile(model, tmp_path, threads=1), threads=1)
    probe = rng.normal(size=(50, 3))
    probe[20:40:3, 1] = np.nan  # blocks 3-4 of 7 rows hold missing values, the others none
    monkeypatch.setattr(hgb, "BLOCK_ROWS", 7)
    got = trees.raw(probe)
    assert got.shape == (50, 3)
    assert np.array_equal(got.view(np.uint64), model._raw_predict(probe).view(np.uint64))
    assert np.isnan(probe).sum() == 7  # the caller's array is left as it was
    probe[45, 0] = hgb.ABSENT
    with pytest.raises(ValueError, match="DBL_MAX"):
        trees.raw(probe)
    # Through the predictor, in blocks of 7 rows: the block holding -DBL_MAX is scored by the model's own trees.
    from scoring.models.compiled import predictor

    monkeypatch.setattr(predictor, "BLOCK_ROWS", 7)
    both = predictor.CompiledModel(model, trees).predict_proba(probe)
    assert np.array_equal(both.view(np.uint64), model.predict_proba(probe).view(np.uint64))


def test_cgroup_quota_caps_the_threads(tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert cgroup_cores(quota) == 2
    quota.write_text("max 100000\n")
    assert cgroup_cores(quota) is None
    assert cgroup_cores(tmp_path / "absent") is None
    assert threads_per_worker(64) == 1


def test_omp_num_threads_caps_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads_per_worker(1) == 1


def test_cli_compile_proves_the_version_and_the_next_run_uses_it(cfg_path: Path, store: Path) -> None:
    from typer.testing import CliRunner

    from scoring.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["models", "compile", "loan_default", "1", "--config", str(cfg_path)])
    assert res.exit_code == 0, res.output
    assert "proven bit-identical" in res.output
    assert ModelStore(store).get("loan_default", 1).meta["compiled"]["status"] == "proven"
    res = runner.invoke(app, ["models", "show", "loan_default", "--version", "1", "--config", str(cfg_path)])
    assert "compiled    proven bitwise float64 (tl2cgen 1." in res.output and "preprocessing: numpy" in res.output
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    results = cfg_path.parent / "results.duckdb"
    assert json.loads(ledger(results).iloc[-1]["details"])["engine"]["engine"] == "compiled"
    res = runner.invoke(app, ["models", "compile", "loan_default", "7", "--config", str(cfg_path)])
    assert res.exit_code != 0 and "no version 7" in res.output and "Traceback" not in res.output


def test_chunks_scored_by_two_engines_publish_as_mixed(tmp_path: Path, sample_db: Path, root: Path) -> None:
    """A day whose chunk tasks loaded different engines (here the compiled library is replaced after chunk 0,
    as on a worker holding a bad copy): each later chunk falls back to native, publish records ``mixed`` with
    the count per engine, and every published score is still the model's own output, bit for bit."""
    from scoring.dates import DataInterval
    from scoring.run import plan as steps

    cfg = load_config(write_config(tmp_path, sample_db, root, scoring={"engine": "auto"},
                                   chunking={"rows_per_chunk": 150}))
    planned = steps.plan_run(cfg, DataInterval.for_day(SCORE_DAY, cfg.timezone), key="mixed")
    assert planned.engine["engine"] == "compiled" and len(planned.chunks) >= 3
    indexes = steps.validate_plan(cfg, planned)
    first = steps.score_planned_chunk(cfg, planned, indexes[0])
    mv = ModelStore(root).get("loan_default", 1)
    (root / "loan_default" / "1" / mv.meta["compiled"]["artifact"]).write_bytes(b"not a library")
    rest = [steps.score_planned_chunk(cfg, planned, i) for i in indexes[1:]]
    steps.publish_plan(cfg, planned, [first, *rest])
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success" and row["rows_in"] == row["rows_scored"] + row["rows_rejected"]
    engine = json.loads(row["details"])["engine"]
    assert engine["engine"] == "mixed", engine
    assert engine["chunks_by_engine"] == {"compiled": first["parts"], "native": sum(r["parts"] for r in rest)}
    _assert_bit_identical(cfg, root, sample_db)
