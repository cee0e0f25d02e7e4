"""A mixed-type model trained in the test, its config, and a real `scoring serve` process on a free port.

``mixed_frame`` is the truth: text keys with leading zeros, a float with NaN, a nullable integer, a nullable
boolean, a category with missing values and a text code whose leading zeros matter ("007" is not "7").
Expected scores are the model's own ``predict_proba`` on that frame, never on what the product converted.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REGIONS = ["north", "south", "east", "west"]
CODES = ["007", "07", "7", "0007"]
INPUTS = ["x1", "visits", "flag", "region", "code"]
READY_S = 120.0  # a loaded machine imports pandas/sklearn slowly


def mixed_frame(n: int = 300, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0, 1, n)
    x1[rng.random(n) < 0.1] = np.nan
    visits = pd.array(rng.integers(0, 9, n), dtype="Int64")
    visits[rng.random(n) < 0.15] = pd.NA
    flag = pd.array(rng.random(n) < 0.5, dtype="boolean")
    flag[rng.random(n) < 0.2] = pd.NA
    region = pd.Series(rng.choice(REGIONS, n), dtype=pd.CategoricalDtype(REGIONS))
    region[rng.random(n) < 0.1] = np.nan
    code = pd.Series(rng.choice(CODES, n), dtype="str")
    logit = 0.8 * np.nan_to_num(x1) + (code == "007").to_numpy() * 1.2 - (region == "north").to_numpy() * 0.7
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"key": [f"{i:06d}" for i in range(n)],
                         "ts": pd.Timestamp("2026-05-01") + pd.to_timedelta(np.arange(n), unit="s"),
                         "x1": x1, "visits": visits, "flag": flag, "region": region, "code": code, "y": y})


def fit(frame: pd.DataFrame, c: float = 1.0) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    ct = ColumnTransformer([("num", SimpleImputer(), ["x1", "visits"]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), ["flag", "region", "code"])])
    return make_pipeline(ct, LogisticRegression(C=c, max_iter=500)).fit(frame[INPUTS], frame["y"])


def own_scores(model: Any, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(frame[INPUTS]), dtype=np.float64)[:, 1]


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as a client sends them: missing values as null, the key as text."""
    out = []
    for rec in frame[["key", *INPUTS]].astype(object).to_dict("records"):
        row = {}
        for k, v in rec.items():
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                row[k] = None
            elif isinstance(v, np.bool_ | bool):
                row[k] = bool(v)
            elif isinstance(v, np.integer):
                row[k] = int(v)
            elif isinstance(v, np.floating):
                row[k] = float(v)
            else:
                row[k] = v
        out.append(row)
    return out


def setup_model(folder: Path, frame: pd.DataFrame, c: float = 1.0) -> tuple[Path, Any]:
    """Train, save and register the model (champion); write the source and the config. Returns (config, model)."""
    import duckdb
    import joblib

    from scoring.models.registry import register_model
    from scoring.models.store import ModelStore

    model = fit(frame, c)
    artifact = folder / f"model_c{c}.joblib"
    joblib.dump(model, artifact)
    store = folder / "models"
    promoting = "champion" in ModelStore(store).aliases("mixed")  # a later version: past the gate, with why
    register_model(ModelStore(store), "mixed", artifact, frame, label_column="y", exclude={"key", "ts"},
                   aliases=["champion"], force=promoting,
                   reason="test: a promotion while serving" if promoting else None)
    source = folder / "source.duckdb"
    if not source.exists():
        con = duckdb.connect(str(source))
        table = frame.drop(columns=["y"])
        con.register("f", table)
        con.execute("CREATE TABLE events AS SELECT * FROM f")
        con.close()
    cfg = {"source": {"kind": "duckdb", "path": str(source), "table": "events", "timestamp_column": "ts",
                      "key_column": "key"},
           "model": {"store": str(store), "name": "mixed", "alias": "champion", "threshold": 0.5},
           "results": {"kind": "duckdb", "path": str(folder / "results.duckdb"),
                       "staging_dir": str(folder / "staging")},
           "validation": {"suites_dir": str(folder / "schemas")}}
    path = folder / "scoring.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`scoring serve` in its own process on a free loopback port; stopped by pid."""

    def __init__(self, cfg: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cfg.parent / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scoring.cli", "serve", "-c", str(cfg), "--port", str(self.port), *args],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            cwd=cfg.parent)

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready in {READY_S}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def when() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
