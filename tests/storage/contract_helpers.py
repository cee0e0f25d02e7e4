"""Staged prediction files of each task's shape (the model contract), written by hand with pyarrow."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from scoring.storage.results import RunRecord

PASSTHROUGH = {"customer_id": pa.int64(), "segment": pa.string(), "signup_at": pa.timestamp("us")}


def staged(task: str, passthrough: bool = True) -> pa.Table:
    """Four staged prediction rows of ``task`` (binary | multiclass | regression), with the three
    passthrough columns (int64, string, timestamp; one NULL each) unless ``passthrough`` is False."""
    keys = ["k1", "k2", "k3", "k4"]
    if task == "binary":
        score = [0.1, 0.5, 0.93, 0.0]
        label = [0, 1, 1, 0]
        cls = ["repaid", "default", "default", "repaid"]
        probs = [None] * 4
    elif task == "multiclass":
        p = [{"a": 0.7, "b": 0.2, "c": 0.1}, {"a": 0.1, "b": 0.6, "c": 0.3}, {"a": 0.2, "b": 0.3, "c": 0.5},
             {"a": 0.34, "b": 0.33, "c": 0.33}]
        score = [max(r.values()) for r in p]
        label = [None] * 4
        cls = [max(r, key=r.get) for r in p]
        probs = [json.dumps(r) for r in p]
    else:
        score = [-12.5, 37.5, 1.0e6, 0.0]
        label = cls = probs = [None] * 4
    cols = {"source_key": pa.array(keys), "score": pa.array(score, pa.float64()),
            "label": pa.array(label, pa.int8()), "predicted_class": pa.array(cls, pa.string()),
            "probabilities": pa.array(probs, pa.string())}
    if passthrough:
        cols["customer_id"] = pa.array([101, None, 2**40, -7], pa.int64())
        cols["segment"] = pa.array(["retail", "sme", None, "retail"])
        cols["signup_at"] = pa.array([dt.datetime(2025, 1, 2, 3, 4, 5, 678901), None,
                                      dt.datetime(2026, 3, 1), dt.datetime(1999, 12, 31, 23, 59, 59)],
                                     PASSTHROUGH["signup_at"])
    return pa.table(cols)


def write(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def run_record(run_id: str, day: dt.date, model: str = "m") -> RunRecord:
    run = RunRecord(run_id, day, model, 1, dt.datetime(2026, 3, 9, 6, tzinfo=dt.UTC))
    run.finish("success")
    return run


def published(store, day: dt.date, columns: list[str], model: str = "m") -> list[dict]:
    """Published rows of one partition, the given columns, ordered by key; JSON text parsed (PostgreSQL
    stores jsonb, which normalizes spacing and key order)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    rows = store.query(f"SELECT {cols} FROM {store.table_name(store.cfg.table)} "  # noqa: S608 - test constants
                       "WHERE day = $1 AND model_name = $2 ORDER BY source_key", [day, model]).to_pylist()
    for row in rows:
        if row.get("probabilities") is not None:
            row["probabilities"] = json.loads(row["probabilities"])
    return rows


def expected(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    for row in rows:
        if row.get("probabilities") is not None:
            row["probabilities"] = json.loads(row["probabilities"])
    return sorted(rows, key=lambda r: r["source_key"])
