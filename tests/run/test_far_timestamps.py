"""Open-ended timestamps (9999-12-31, 2300-01-01) end to end through ``scoring run``: a datetime feature
beyond the ``datetime64[ns]`` range the model was trained with is quarantined row by row naming the column
and the value, never failing the day; the same values as passthrough columns are published as the source
holds them; every other row scores like the model (|diff| <= 1e-9), rows_in = scored + quarantined.
"""

from __future__ import annotations

import datetime as dt
from operator import methodcaller
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from typer.testing import CliRunner

from scoring.cli import app

runner = CliRunner()
DAY = dt.date(2026, 3, 7)
FAR = [dt.datetime(9999, 12, 31), dt.datetime(2300, 1, 1, 10)]


def _model(folder: Path) -> tuple[object, Path, Path]:
    rng = np.random.default_rng(4)
    ends = pd.Series(pd.to_datetime("2026-01-01") + pd.to_timedelta(rng.integers(0, 3000, 400), unit="D"))
    train = pd.DataFrame({"x1": rng.normal(size=400), "ends": ends.astype("datetime64[ns]")})
    train["y"] = (train["x1"] + (train["ends"].dt.year - 2030) / 4 + rng.normal(scale=0.5, size=400) > 0).astype(int)
    days = make_pipeline(FunctionTransformer(methodcaller("astype", "int64")), StandardScaler())
    model = make_pipeline(ColumnTransformer([("num", "passthrough", ["x1"]), ("ends", days, ["ends"])]),
                          LogisticRegression()).fit(train[["x1", "ends"]], train["y"])
    assert str(train["ends"].dtype) == "datetime64[ns]"
    artifact, data = folder / "m.joblib", folder / "train.parquet"
    joblib.dump(model, artifact)
    train.to_parquet(data)
    return model, artifact, data


def test_far_timestamps_are_quarantined_as_features_and_kept_as_passthrough(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    n = 30
    ends = [dt.datetime(2027, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 2000, n)]
    ends[3], ends[11] = FAR
    frame = pd.DataFrame({"id": range(n), "ts": [dt.datetime(2026, 3, 7, 1) + dt.timedelta(minutes=9 * i)
                                                  for i in range(n)], "x1": rng.normal(size=n)})
    db = tmp_path / "events.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE events AS SELECT * FROM frame")
        con.execute("ALTER TABLE events ADD COLUMN ends TIMESTAMP")
        for i, value in enumerate(ends):
            con.execute("UPDATE events SET ends = $1 WHERE id = $2", [value, i])
        con.execute("ALTER TABLE events ADD COLUMN contract_end TIMESTAMP")
        con.execute("UPDATE events SET contract_end = ends")
        con.execute("UPDATE events SET contract_end = $1 WHERE id = 0", [FAR[0]])  # scored rows, far passthrough
        con.execute("UPDATE events SET contract_end = $1 WHERE id = 1", [FAR[1]])
    model, artifact, data = _model(tmp_path)
    cfg = tmp_path / "scoring.yaml"
    cfg.write_text(yaml.safe_dump({
        "source": {"kind": "duckdb", "path": str(db), "table": "events", "timestamp_column": "ts", "key_column": "id"},
        "model": {"store": str(tmp_path / "models"), "name": "far", "alias": "champion"},
        "results": {"kind": "duckdb", "path": str(tmp_path / "r.duckdb"), "staging_dir": str(tmp_path / "st"),
                    "passthrough": ["contract_end"]},
        "validation": {"data_docs": False, "suites_dir": str(tmp_path / "schemas"), "error_threshold": 0.2},
    }, sort_keys=False))
    res = runner.invoke(app, ["models", "register", "--name", "far", "--artifact", str(artifact), "--training-data",
                              str(data), "--label", "y", "--alias", "champion", "--config", str(cfg),
                              "--trust"])  # operator.methodcaller is not on the allow-list (it can call anything)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--date", DAY.isoformat(), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    with duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True) as con:
        pub = con.sql("SELECT * FROM predictions ORDER BY CAST(source_key AS INTEGER)").df()
        qua = con.sql("SELECT source_key, column_name, rule, value FROM quarantine ORDER BY source_key").fetchall()
        run = con.sql("SELECT rows_in, rows_scored, rows_rejected, status FROM runs").fetchall()
    assert [(k, c, r) for k, c, r, _ in qua] == [("11", "ends", "datetime_out_of_range"),
                                                ("3", "ends", "datetime_out_of_range")]
    assert {v for *_, v in qua} == {"9999-12-31 00:00:00.000000", "2300-01-01 10:00:00.000000"}
    assert run == [(n, n - 2, 2, "success")]
    scored = frame.assign(ends=pd.Series(ends, dtype="datetime64[us]")).drop(index=[3, 11])
    own = model.predict_proba(scored[["x1", "ends"]].astype({"ends": "datetime64[ns]"}))[:, 1]
    assert list(pub["source_key"]) == [str(i) for i in scored["id"]]
    assert np.abs(pub["score"].to_numpy() - own).max() <= 1e-9
    expected = [FAR[0], FAR[1], *(ends[i] for i in scored["id"][2:])]
    assert [v.to_pydatetime() if hasattr(v, "to_pydatetime") else v for v in pub["contract_end"]] == expected
