"""Report summaries per model task: regression bins over the day's [min, max]; binary unchanged."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from scoring.reports.summaries import summarize
from tests.storage.contract_helpers import run_record, staged, write

DAY = dt.date(2026, 4, 1)


def _summaries(tmp_path: Path, table: pa.Table, task: str) -> tuple[dict, list[dict]]:
    out = summarize(run_record("r", DAY), [write(tmp_path / "chunk.parquet", table)], [], task=task)
    return out["prediction_stats"].to_pylist()[0], out["score_bins"].to_pylist()


def test_regression_bins_span_the_days_range_and_add_up(tmp_path: Path) -> None:
    values = np.random.default_rng(3).normal(100.0, 25.0, 1000)
    rows = pa.table({"source_key": [f"k{i}" for i in range(1000)], "score": values,
                     "label": pa.nulls(1000, pa.int8()), "predicted_class": pa.nulls(1000, pa.string()),
                     "probabilities": pa.nulls(1000, pa.string())})
    stats, bins = _summaries(tmp_path, rows, "regression")
    assert stats["task"] == "regression" and stats["positives"] == 0 and stats["positive_rate"] is None
    assert stats["score_min"] == values.min() and stats["score_max"] == values.max()
    assert stats["mean_score"] == pytest.approx(values.mean())
    assert len(bins) == 20 and sum(b["count"] for b in bins) == 1000
    assert bins[0]["bin_lo"] == values.min() and bins[-1]["bin_hi"] == values.max()
    edges = np.linspace(values.min(), values.max(), 21)
    assert [b["bin_lo"] for b in bins] == pytest.approx(edges[:-1].tolist())
    expected, _ = np.histogram(values, bins=edges)  # numpy's last bin is closed, like ours
    assert [b["count"] for b in bins] == expected.tolist()


def test_regression_with_one_value_has_one_bin(tmp_path: Path) -> None:
    rows = staged("regression", passthrough=False).set_column(1, "score", pa.array([37.5] * 4))
    stats, bins = _summaries(tmp_path, rows, "regression")
    assert [(b["bin"], b["bin_lo"], b["bin_hi"], b["count"]) for b in bins] == [(0, 37.5, 37.5, 4)]


def test_binary_unchanged_and_multiclass_bins_over_unit_interval(tmp_path: Path) -> None:
    stats, bins = _summaries(tmp_path, staged("binary"), "binary")
    assert (stats["task"], stats["positives"], stats["positive_rate"]) == ("binary", 2, 0.5)
    assert [(b["bin_lo"], b["bin_hi"]) for b in bins[:2]] == [(0.0, 0.05), (0.05, 0.1)] and len(bins) == 20
    assert {b["bin"]: b["count"] for b in bins if b["count"]} == {0: 1, 2: 1, 10: 1, 18: 1}
    stats, bins = _summaries(tmp_path, staged("multiclass"), "multiclass")
    assert (stats["task"], stats["positives"], stats["positive_rate"]) == ("multiclass", 0, None)
    assert bins[-1]["bin_hi"] == 1.0 and sum(b["count"] for b in bins) == 4
