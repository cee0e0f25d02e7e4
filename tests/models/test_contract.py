"""The model contract, end to end: models trained outside the project, registered with the CLI, a day run.

For every model type: every published value equals the model's own output on the same source rows
(|diff| <= 1e-9), rows_in = scored + quarantined, and exactly the rows the model cannot score are
quarantined (a level it never saw, rows it raises on).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.run import run_day
from tests.helpers import published
from tests.models.cases import NEW_LEVEL, SCORE_DAY, Case, cases, day_rows, make_frame, training_rows

runner = CliRunner()
CASES = {c.name: c for c in cases()}
PASSTHROUGH = ["region", "visits", "ts"]
CATEGORY_CASES = {"hgb_native_categorical", "xgboost_categorical", "lightgbm_categorical",
                  "encoder_refuses_new_levels"}


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory, truth: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("contract") / "events.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("frame", truth)
        con.execute("CREATE TABLE events AS SELECT * FROM frame")
    return path


def write_cfg(folder: Path, source: dict, name: str, results: dict | None = None, **more: object) -> Path:
    raw = {
        "source": source,
        "model": {"store": str(folder / "models"), "name": name, "alias": "champion", "threshold": 0.5},
        "results": results or {"kind": "duckdb", "path": str(folder / "results.duckdb"),
                               "staging_dir": str(folder / "staging")},
        "validation": {"error_threshold": 0.2, "data_docs": False, "suites_dir": str(folder / "schemas")},
        **more,
    }
    path = folder / "scoring.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def duckdb_source(db: Path) -> dict:
    return {"kind": "duckdb", "path": str(db), "table": "events", "timestamp_column": "ts", "key_column": "id"}


def fit_and_save(case: Case, truth: pd.DataFrame, folder: Path) -> tuple[object, Path, Path]:
    """Fit outside the project; save the artifact and the training rows as the user would give them."""
    train = training_rows(truth)
    model = case.fit(train)
    artifact = folder / f"{case.name}.joblib"
    joblib.dump(model, artifact)
    data = folder / f"{case.name}.parquet"
    case.prepare(train)[list(dict.fromkeys(["id", "ts", *case.inputs, case.label]))].to_parquet(data)
    return model, artifact, data


def register(cfg: Path, case: Case, artifact: Path, data: Path, *extra: str) -> object:
    return runner.invoke(app, ["models", "register", "--name", case.name, "--artifact", str(artifact),
                               "--training-data", str(data), "--label", case.label, "--alias", "champion",
                               *case.register, *extra, "--config", str(cfg)])


def expected_quarantine(case: Case, day: pd.DataFrame) -> set[str]:
    if case.name in CATEGORY_CASES:
        return set(day.loc[day["region"] == NEW_LEVEL, "id"].astype(str))
    if case.name == "raises_on_some_rows":
        return set(day.loc[day["tag"] == "boom", "id"].astype(str))
    if case.name in ("numpy_fitted", "custom_code"):  # x3 never missing in training, no imputer, not NaN-native
        return set(day.loc[day["x3"].isna(), "id"].astype(str))
    return set()


def check_published(case: Case, model: object, truth: pd.DataFrame, pub: pd.DataFrame, quarantined: set[str],
                    result: object) -> None:
    day = day_rows(truth)
    assert quarantined == expected_quarantine(case, day)
    keep = ~day["id"].astype(str).isin(quarantined)
    scored = day[keep].reset_index(drop=True)
    own = pd.Series(case.own(model, scored), index=scored["id"].astype(str))
    pub = pub.set_index("source_key")
    assert sorted(pub.index) == sorted(own.index)
    diff = np.abs(pub.loc[own.index, "score"].to_numpy(dtype=float) - own.to_numpy())
    assert diff.max() <= 1e-9, f"{case.name}: max |diff| {diff.max()}"
    assert result.rows_in == len(day) == result.rows_scored + result.rows_rejected
    assert result.rows_rejected == len(quarantined)
    if case.task == "binary":
        assert (pub["label"] == (pub["score"] >= 0.5).astype(int)).all()
    else:
        assert pub["label"].isna().all()
    if case.task == "regression":
        assert pub["predicted_class"].isna().all()
    else:
        expect = pd.Series(model.predict(case.given(scored)), index=own.index).astype(str)
        assert (pub.loc[own.index, "predicted_class"] == expect).all()
    if case.output.get("probabilities"):
        probs = model.predict_proba(case.given(scored))
        got = np.array([[(p if isinstance(p, dict) else json.loads(p))[str(c)] for c in model.classes_]
                        for p in pub.loc[own.index, "probabilities"]])
        assert np.abs(got - probs).max() <= 1e-12


def quarantine_keys(results: Path) -> pd.DataFrame:
    with duckdb.connect(str(results), read_only=True) as con:
        return con.sql("SELECT source_key, column_name, rule, value, reason FROM quarantine").df()


@pytest.mark.parametrize("name", list(CASES))
def test_model_type_scores_exactly(name: str, tmp_path: Path, truth: pd.DataFrame, source_db: Path) -> None:
    case = CASES[name]
    results = {"kind": "duckdb", "path": str(tmp_path / "results.duckdb"), "staging_dir": str(tmp_path / "staging"),
               "passthrough": PASSTHROUGH if name == "binary" else []}
    cfg = write_cfg(tmp_path, duckdb_source(source_db), case.name, results, output=case.output)
    model, artifact, data = fit_and_save(case, truth, tmp_path)
    res = register(cfg, case, artifact, data)
    assert res.exit_code == 0, res.output
    meta = json.loads(next((tmp_path / "models" / case.name).glob("1/metadata.json")).read_text())
    assert meta["signature"]["task"] == case.task
    assert meta["signature"]["inputs"][0]["name"] == case.inputs[0]
    assert meta["parity"]["passed"] and meta["parity"]["max_abs_diff"] <= 1e-9
    result = run_day(load_config(cfg), SCORE_DAY)
    q = quarantine_keys(tmp_path / "results.duckdb")
    check_published(case, model, truth, published(tmp_path / "results.duckdb", SCORE_DAY), set(q["source_key"]),
                    result)
    if name == "binary":  # passthrough columns beside the predictions, with their source types
        pub = published(tmp_path / "results.duckdb", SCORE_DAY).set_index("source_key")
        day = day_rows(truth).set_index(day_rows(truth)["id"].astype(str))
        for column in PASSTHROUGH:
            assert pub[column].equals(day.loc[pub.index, column].rename(column)) or \
                list(pub[column]) == list(day.loc[pub.index, column]), column
        with duckdb.connect(str(tmp_path / "results.duckdb"), read_only=True) as con:
            types = dict(con.sql("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'predictions'").fetchall())
        assert (types["region"], types["visits"], types["ts"]) == ("VARCHAR", "BIGINT", "TIMESTAMP")
    if name == "raises_on_some_rows":
        assert set(q["rule"]) == {"model_error"}
        assert q["reason"].str.contains("tag 'boom' cannot be encoded").all()
        assert set(q["column_name"]) == {"tag"}
    if name == "encoder_refuses_new_levels":  # knowable in advance: the suite quarantines before scoring
        assert set(q["rule"]) == {"expect_column_values_to_be_in_set"} and set(q["column_name"]) == {"region"}


def one_line_error(res: object) -> str:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


@pytest.fixture()
def numpy_case(tmp_path: Path, truth: pd.DataFrame, source_db: Path) -> tuple[Path, Case, Path, Path]:
    case = CASES["numpy_fitted"]
    cfg = write_cfg(tmp_path, duckdb_source(source_db), case.name)
    _, artifact, data = fit_and_save(case, truth, tmp_path)
    return cfg, case, artifact, data


def test_misordered_features_are_refused_by_the_chance_level_metrics(numpy_case) -> None:
    """``--features`` is the order of a model without column names (the training file's order never is): the
    wrong order is refused by the labelled rows' chance-level metrics, the right one registers whatever the
    file's column order, and without --label such a model is refused (nothing else could check the order)."""
    cfg, case, artifact, data = numpy_case
    base = ["models", "register", "--name", case.name, "--artifact", str(artifact), "--training-data", str(data),
            "--config", str(cfg)]
    line = one_line_error(runner.invoke(app, [*base, "--features", "x2,x3", "--label", case.label]))
    assert "ROC AUC" in line and "misordered" in line and "--accept-metrics" in line, line
    assert not (cfg.parent / "models" / case.name / "1").exists()
    assert "needs --label" in one_line_error(runner.invoke(app, [*base, "--features", "x3,x2"]))
    reordered = data.with_name("reordered.parquet")
    frame = pd.read_parquet(data)
    frame[list(reversed(frame.columns))].to_parquet(reordered)  # the file's order contradicts the model's
    res = runner.invoke(app, [*base[:-4], "--training-data", str(reordered), "--config", str(cfg),
                              "--features", "x3,x2", "--label", case.label])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*base, "--features", "x2,x3", "--label", case.label, "--accept-metrics"])
    assert res.exit_code == 0, res.output


def test_numpy_model_needs_declared_features(numpy_case) -> None:
    cfg, case, artifact, data = numpy_case
    base = ["models", "register", "--name", case.name, "--artifact", str(artifact), "--training-data", str(data),
            "--config", str(cfg)]
    assert "--features" in one_line_error(runner.invoke(app, base))
    assert "fitted on 2" in one_line_error(runner.invoke(app, [*base, "--features", "x3,x2,x1"]))


def test_registration_mistakes_are_one_line(tmp_path: Path, truth: pd.DataFrame, source_db: Path) -> None:
    case = CASES["binary_text_classes"]
    cfg = write_cfg(tmp_path, duckdb_source(source_db), case.name)
    _, artifact, data = fit_and_save(case, truth, tmp_path)
    base = ["models", "register", "--name", case.name, "--artifact", str(artifact), "--training-data", str(data),
            "--config", str(cfg)]
    assert "--positive-class" in one_line_error(runner.invoke(app, base))
    assert "'worse' is not one of" in one_line_error(runner.invoke(app, [*base, "--positive-class", "worse"]))
    assert "label column 'y_tx'" in one_line_error(
        runner.invoke(app, [*base, "--positive-class", "bad", "--label", "y_tx"]))
    assert "has 2 classes" in one_line_error(runner.invoke(app, [*base, "--task", "multiclass"]))


def test_unlabelled_rows_and_text_labels(tmp_path: Path, truth: pd.DataFrame, source_db: Path) -> None:
    case = CASES["binary_text_classes"]
    cfg = write_cfg(tmp_path, duckdb_source(source_db), case.name)
    model, artifact, data = fit_and_save(case, truth, tmp_path)
    frame = pd.read_parquet(data)
    frame.loc[frame.index % 4 == 0, "y_txt"] = None
    frame.to_parquet(data)
    res = register(cfg, case, artifact, data)
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "models" / case.name / "1" / "metadata.json").read_text())
    labelled = frame[frame["y_txt"].notna()]
    from sklearn.metrics import roc_auc_score

    expect = roc_auc_score(labelled["y_txt"] == "bad", model.predict_proba(labelled[case.inputs])[:, 0])
    assert meta["metrics"]["unlabelled_rows"] == int(frame["y_txt"].isna().sum())
    assert abs(meta["metrics"]["roc_auc"] - expect) < 1e-12
    assert meta["signature"]["positive_class"] == "bad"


CUSTOM = """\
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class LogGap(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        self.mid_ = np.nanmedian(np.asarray(X, dtype=float), axis=0)
        return self

    def transform(self, X):
        return np.log1p(np.abs(np.nan_to_num(np.asarray(X, dtype=float)) - self.mid_))
"""


def test_custom_code_module(tmp_path: Path, truth: pd.DataFrame, source_db: Path, monkeypatch) -> None:
    """A Pipeline with the user's own transformer: registered with --code, scored without PYTHONPATH, and
    refused once the stored module is edited."""
    import sys

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    module = f"loggap_{tmp_path.name.replace('-', '_')}"
    src = tmp_path / "user_code"
    src.mkdir()
    (src / f"{module}.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(src))
    mod = __import__(module)
    case = Case("custom_code", lambda f: make_pipeline(mod.LogGap(), LogisticRegression()).fit(
        f[["x1", "x3"]], f["y_bin"]), ["x1", "x3"], "y_bin", "binary", ["--features", "x1,x3"], numpy=True)
    cfg = write_cfg(tmp_path, duckdb_source(source_db), case.name)
    model, artifact, data = fit_and_save(case, truth, tmp_path)
    monkeypatch.undo()  # the module is no longer importable from the user's folder
    sys.modules.pop(module, None)
    try:
        res = register(cfg, case, artifact, data, "--code", str(src / f"{module}.py"))
        assert res.exit_code == 0, res.output
        result = run_day(load_config(cfg), SCORE_DAY)
        q = quarantine_keys(tmp_path / "results.duckdb")
        assert set(q["rule"]) == {"expect_column_values_to_not_be_null"} and set(q["column_name"]) == {"x3"}
        check_published(case, model, truth, published(tmp_path / "results.duckdb", SCORE_DAY), set(q["source_key"]),
                        result)
        stored = tmp_path / "models" / case.name / "1" / "code" / f"{module}.py"
        stored.write_text(CUSTOM.replace("log1p", "sqrt"))
        with pytest.raises(Exception, match="changed since registration"):
            run_day(load_config(cfg), SCORE_DAY)
    finally:
        sys.modules.pop(module, None)


def test_version_registered_before_signatures_scores_as_before(tmp_path: Path, truth: pd.DataFrame,
                                                               source_db: Path) -> None:
    """Metadata without ``signature`` (today's stores): binary, last class, Arrow's own pandas conversion."""
    case = CASES["binary"]
    cfg = write_cfg(tmp_path, duckdb_source(source_db), case.name)
    model, artifact, data = fit_and_save(case, truth, tmp_path)
    assert register(cfg, case, artifact, data).exit_code == 0
    meta_file = tmp_path / "models" / case.name / "1" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    for key in ("signature", "parity"):
        meta.pop(key)
    meta_file.write_text(json.dumps(meta))
    result = run_day(load_config(cfg), SCORE_DAY)
    check_published(case, model, truth, published(tmp_path / "results.duckdb", SCORE_DAY),
                    set(quarantine_keys(tmp_path / "results.duckdb")["source_key"]), result)


PG_CASES = ["nullable_boolean_integer", "xgboost_categorical", "regression_ridge", "multiclass", "numpy_fitted"]


@pytest.mark.postgres
@pytest.mark.parametrize("name", PG_CASES)
def test_model_type_scores_exactly_on_postgres(name: str, tmp_path: Path, truth: pd.DataFrame, pg_url: str,
                                               pg_schema: str) -> None:
    """The same cases with a PostgreSQL source (its own Arrow types: bigint, boolean, text, timestamptz) and
    PostgreSQL results."""
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    from tests.storage.pg_helpers import pg_frame

    rows = truth.assign(ts=truth["ts"].dt.tz_localize("UTC"))
    with pg.connect(pg_url) as con, con.cursor() as cur:
        cur.adbc_ingest("events", pa.Table.from_pandas(rows, preserve_index=False), mode="create",
                        db_schema_name=pg_schema)
        con.commit()
    case = CASES[name]
    source = {"kind": "postgres", "url": pg_url, "table": f"{pg_schema}.events", "timestamp_column": "ts",
              "key_column": "id"}
    results = {"kind": "postgres", "url": pg_url, "schema": pg_schema, "staging_dir": str(tmp_path / "staging")}
    cfg = write_cfg(tmp_path, source, case.name, results, output=case.output)
    model, artifact, data = fit_and_save(case, truth, tmp_path)
    assert register(cfg, case, artifact, data).exit_code == 0
    result = run_day(load_config(cfg), SCORE_DAY)
    pub = pg_frame(pg_url, f'SELECT * FROM "{pg_schema}".predictions WHERE day = %s ORDER BY source_key', [SCORE_DAY])
    quarantined = pg_frame(pg_url, f'SELECT source_key FROM "{pg_schema}".quarantine')
    check_published(case, model, truth, pub, set(quarantined["source_key"]), result)


def test_parity_check_catches_the_old_conversion_of_nullable_booleans(truth: pd.DataFrame) -> None:
    """The conversion scoring used before the contract (Arrow's own ``to_pandas()``: a nullable boolean becomes
    objects with None) gives wrong scores on exactly the NULL rows: the parity check refuses it."""
    import dataclasses

    from scoring.errors import ModelStoreError
    from scoring.models.parity import parity_check
    from scoring.models.registry import build_contract

    case = CASES["nullable_boolean_integer"]
    train = training_rows(truth)
    model = case.fit(train)
    contract = build_contract(model, train, case.name)
    assert parity_check(model, train, contract, case.name)["max_abs_diff"] <= 1e-9
    old = dataclasses.replace(contract, inputs=tuple(dataclasses.replace(i, dtype="arrow") for i in contract.inputs))
    with pytest.raises(ModelStoreError, match=r"parity check failed: .*'flag' \(boolean -> object\)"):
        parity_check(model, train, old, case.name)


FRAME_ONLY = """\
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Ratio(BaseEstimator, TransformerMixin):
    \"\"\"Reads its columns by name: fails on a NumPy array (no column names, no feature_names_in_).\"\"\"

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.column_stack([X["x1"].to_numpy(dtype=float),
                                X["x1"].to_numpy(dtype=float) / (np.abs(X["x2"].to_numpy(dtype=float)) + 1)])
"""


def test_dataframe_only_custom_transformer_gets_a_dataframe(tmp_path: Path, truth: pd.DataFrame,
                                                           source_db: Path, monkeypatch) -> None:
    """A Pipeline whose first step reads columns by name: registered (the parity check hands it a DataFrame in
    the declared order) and scored like the model's own output on a DataFrame (|diff| <= 1e-9)."""
    import sys

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    module = f"frameonly_{tmp_path.name.replace('-', '_')}"
    src = tmp_path / "user_code"
    src.mkdir()
    (src / f"{module}.py").write_text(FRAME_ONLY)
    monkeypatch.syspath_prepend(str(src))
    mod = __import__(module)
    case = Case("frame_only", lambda f: make_pipeline(mod.Ratio(), LogisticRegression()).fit(
        f[["x1", "x2"]].fillna(0), f["y_bin"]), ["x1", "x2"], "y_bin", "binary", ["--features", "x1,x2"],
        prepare=lambda f: f.fillna({"x1": 0, "x2": 0}))
    cfg = write_cfg(tmp_path, duckdb_source(source_db), case.name)
    model, artifact, data = fit_and_save(case, truth, tmp_path)
    assert getattr(model, "feature_names_in_", None) is None
    with pytest.raises(Exception):  # noqa: B017, PT011 - what the product handed it before
        model.predict_proba(truth[["x1", "x2"]].fillna(0).to_numpy())
    # importable from PYTHONPATH today, but not part of an installed package: refused without --code
    line = one_line_error(register(cfg, case, artifact, data))
    assert module in line and "--code" in line, line  # refused by the pickle's allow-list, naming the module
    assert not (tmp_path / "models" / case.name / "1").exists()
    monkeypatch.undo()
    sys.modules.pop(module, None)
    try:
        res = register(cfg, case, artifact, data, "--code", str(src / f"{module}.py"))
        assert res.exit_code == 0, res.output
        meta = json.loads((tmp_path / "models" / case.name / "1" / "metadata.json").read_text())
        assert meta["signature"]["input"] == "frame" and meta["signature"]["feature_names"] is False
        result = run_day(load_config(cfg), SCORE_DAY)
        day = day_rows(truth)
        missing = day[["x1", "x2"]].isna().any(axis=1)
        q = quarantine_keys(tmp_path / "results.duckdb")
        assert set(q["source_key"]) == set(day.loc[missing, "id"].astype(str))
        scored = day[~missing].reset_index(drop=True)
        own = pd.Series(model.predict_proba(scored[["x1", "x2"]])[:, 1], index=scored["id"].astype(str))
        pub = published(tmp_path / "results.duckdb", SCORE_DAY).set_index("source_key")
        assert sorted(pub.index) == sorted(own.index)
        assert np.abs(pub.loc[own.index, "score"].to_numpy() - own.to_numpy()).max() <= 1e-9
        assert result.rows_in == len(day) == result.rows_scored + result.rows_rejected
    finally:
        sys.modules.pop(module, None)
