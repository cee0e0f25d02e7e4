"""On-demand jobs keep row identity and input types: a CSV's ids and codes with leading zeros are read as
written and typed from the model's signature (never by inference), an unparsable number is quarantined naming
the column and the value, and ``--key`` never changes the version's suite. End to end through ``scoring jobs``:
published keys equal the input's text, scores equal the model's own (|diff| <= 1e-9), rows_in = scored +
quarantined.
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
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from scoring.cli import app

runner = CliRunner()
CODES = ["0001E5", "000123", "0042", "42", "123"]  # '000123' and '123' are different levels


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"{i:06d}" for i in range(1, n + 1)], "ref": [f"R{i:05d}" for i in range(n)],
                         "x1": np.round(rng.normal(size=n), 6), "code": rng.choice(CODES, size=n)})


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, object]:
    train = _rows(500, 1)
    weights = dict(zip(CODES, [2.0, -1.5, 1.0, -2.0, 0.5], strict=True))
    rng = np.random.default_rng(2)
    train["y"] = (train["x1"] + train["code"].map(weights) + rng.normal(scale=0.5, size=500) > 0).astype(int)
    model = make_pipeline(ColumnTransformer([("num", "passthrough", ["x1"]),
                                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["code"])]),
                          LogisticRegression()).fit(train[["x1", "code"]], train["y"])
    joblib.dump(model, tmp_path / "m.joblib")
    train.to_parquet(tmp_path / "train.parquet")
    db = tmp_path / "src.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE events (id VARCHAR, ref VARCHAR, ts TIMESTAMP, x1 DOUBLE, code VARCHAR)")
    cfg = tmp_path / "scoring.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"kind": "duckdb", "path": str(db), "table": "events", "timestamp_column": "ts",
                   "key_column": "id"},
        "model": {"store": str(tmp_path / "models"), "name": "codes", "alias": "champion"},
        "results": {"kind": "duckdb", "path": str(tmp_path / "results.duckdb"), "staging_dir": str(tmp_path / "st")},
        "validation": {"data_docs": False, "suites_dir": str(tmp_path / "schemas"), "error_threshold": 0.5},
    }, sort_keys=False))
    res = runner.invoke(app, ["models", "register", "--name", "codes", "--artifact", str(tmp_path / "m.joblib"),
                              "--training-data", str(tmp_path / "train.parquet"), "--label", "y",
                              "--alias", "champion", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    return cfg, model


def _job(cfg: Path, *args: str) -> dict:
    res = runner.invoke(app, ["jobs", "submit", "--config", str(cfg), *args, "--wait", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _published(cfg: Path, job_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = yaml.safe_load(cfg.read_text())["results"]["path"]
    with duckdb.connect(results, read_only=True) as con:
        pub = con.sql("SELECT * FROM job_predictions WHERE job_id = $1", params=[job_id]).df()
        qua = con.sql("SELECT * FROM job_quarantine WHERE job_id = $1", params=[job_id]).df()
    return pub, qua


def _check(job: dict, model: object, rows: pd.DataFrame, pub: pd.DataFrame, quarantined: set[str]) -> None:
    assert job["state"] == "succeeded", job
    assert job["rows_in"] == len(rows) == job["rows_scored"] + job["rows_quarantined"]
    assert job["rows_quarantined"] == len(quarantined)
    assert set(pub["source_key"]) == set(rows["id"]) - quarantined
    scored = rows.set_index("id").loc[pub["source_key"]]
    own = model.predict_proba(pd.DataFrame({"x1": scored["x1"].astype(float), "code": scored["code"]}))[:, 1]
    assert np.abs(pub["score"].to_numpy(dtype=float) - own).max() <= 1e-9


def test_csv_and_parquet_jobs_keep_leading_zeros_and_quarantine_unparsable_numbers(setup, tmp_path: Path) -> None:
    cfg, model = setup
    rows = _rows(60, 5).astype({"x1": object})
    rows.loc[7, "x1"] = "abc"  # not a number: quarantined with its column and value
    rows.loc[12, "x1"] = "9007199254740993"  # no double holds it: quarantined, never scored as ...992
    csv = tmp_path / "in.csv"
    rows.to_csv(csv, index=False)
    job = _job(cfg, "--input", str(csv))
    pub, qua = _published(cfg, job["job_id"])
    assert sorted(qua[["source_key", "column_name", "value"]].values.tolist()) == [
        [rows.loc[7, "id"], "x1", "abc"], [rows.loc[12, "id"], "x1", "9007199254740993"]]
    _check(job, model, rows, pub, {rows.loc[7, "id"], rows.loc[12, "id"]})

    clean = _rows(50, 6)
    parquet = tmp_path / "in.parquet"
    clean.to_parquet(parquet, index=False)
    job = _job(cfg, "--input", str(parquet))
    pub, qua = _published(cfg, job["job_id"])
    assert qua.empty
    _check(job, model, clean, pub, set())


def test_a_jobs_own_key_never_changes_the_versions_suite(setup, tmp_path: Path) -> None:
    cfg, model = setup
    suite = tmp_path / "schemas" / "codes" / "v1.json"
    before = suite.read_bytes()
    rows = _rows(30, 8)
    rows.loc[3, "ref"] = rows.loc[4, "ref"]  # duplicated under the job's own key
    parquet = tmp_path / "keyed.parquet"
    rows.to_parquet(parquet, index=False)
    job = _job(cfg, "--input", str(parquet), "--key", "ref")
    pub, qua = _published(cfg, job["job_id"])
    assert job["state"] == "succeeded" and job["rows_quarantined"] == 2
    assert set(qua["source_key"]) == {rows.loc[3, "ref"]} and set(qua["rule"]) == {
        "expect_column_values_to_be_unique"}
    assert set(pub["source_key"]) == set(rows["ref"]) - {rows.loc[3, "ref"]}
    assert suite.read_bytes() == before
    suite.unlink()  # a job with its own key on a version without a suite file: the file written is the config's
    job = _job(cfg, "--input", str(parquet), "--key", "ref")
    assert json.loads(suite.read_text())["meta"]["scoring"]["key_column"] == "id"
    job = _job(cfg, "--input", str(parquet))
    assert job["state"] == "succeeded" and job["rows_in"] == 30 == job["rows_scored"]
    _check(job, model, rows, _published(cfg, job["job_id"])[0], set())


def test_string_view_dictionary_and_large_string_columns_are_accepted_as_strings(setup, tmp_path: Path) -> None:
    """A Parquet file whose key is dictionary-encoded, its code string_view and its ref large_string (what
    Polars and DuckDB write): keys, inputs and scores as with plain strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg, model = setup
    rows = _rows(40, 12)
    table = pa.table({"id": pa.array(rows["id"]).dictionary_encode(),
                      "ref": pa.array(rows["ref"], pa.large_string()),
                      "x1": pa.array(rows["x1"]), "code": pa.array(rows["code"]).cast(pa.string_view())})
    path = tmp_path / "views.parquet"
    pq.write_table(table, path)
    job = _job(cfg, "--input", str(path))
    pub, qua = _published(cfg, job["job_id"])
    assert qua.empty
    _check(job, model, rows, pub, set())


def test_numbers_cast_to_text_under_warn_are_checked_row_by_row(setup, tmp_path: Path) -> None:
    """``validation.schema_drift: warn`` casts a numeric ``code`` to the text the model reads; a row whose
    number does not give back one spelling the model knows (``0001E5`` for 100000, ``0042`` or ``42`` for 42,
    an exponent form) is quarantined naming the column, value and rule, never scored on a changed level."""
    cfg, model = setup
    raw = yaml.safe_load(cfg.read_text())
    raw["validation"].update(schema_drift="warn", error_threshold=0.9)
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    rng = np.random.default_rng(9)
    numbers = [42.0, 123.0, 100000.0, 7.0, 0.5, 1e-7, 300.0, 2.0 ** 60, float("nan")]
    rows = pd.DataFrame({"id": [f"{i:06d}" for i in range(1, 46)], "ref": "r",
                         "x1": np.round(rng.normal(size=45), 6), "code": numbers * 5})
    parquet = tmp_path / "numbers.parquet"
    rows.to_parquet(parquet, index=False)
    job = _job(cfg, "--input", str(parquet))
    pub, qua = _published(cfg, job["job_id"])
    lossy = {42.0, 123.0, 100000.0, 1e-7, 2.0 ** 60}
    bad = set(rows.loc[rows["code"].isin(lossy), "id"])
    missing = set(rows.loc[rows["code"].isna(), "id"])  # NaN is a missing code: the suite's not-null rule
    cast = qua[qua["source_key"].isin(bad)]
    assert set(qua["source_key"]) == bad | missing and set(qua["column_name"]) == {"code"}, qua
    assert set(cast["rule"]) == {"expect_column_values_to_be_of_type"}, cast  # the suite's type rule on code
    assert sorted(set(cast["value"])) == sorted({"42", "123", "100000", "1e-7", "1.152921504606847e+18"})
    assert job["rows_in"] == 45 == job["rows_scored"] + job["rows_quarantined"]
    assert job["rows_quarantined"] == len(bad | missing)
    text = {7.0: "7", 0.5: "0.5", 300.0: "300"}
    scored = rows.set_index("id").loc[pub["source_key"]]
    inputs = pd.DataFrame({"x1": scored["x1"].astype(float),
                           "code": [None if np.isnan(c) else text[c] for c in scored["code"]]})
    own = model.predict_proba(inputs)[:, 1]
    assert np.abs(pub["score"].to_numpy(dtype=float) - own).max() <= 1e-9
