"""Reports of a regression model: the predictions' distribution (mean, quantiles, range, histogram over real
edges) instead of a positive rate, in the terminal tables, JSON and HTML."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from rich.console import Console

from scoring.config import load_config
from scoring.reports.data import load_report
from scoring.reports.html import render_html
from scoring.reports.outputs import rich_tables, to_json
from scoring.reports.summaries import summarize
from scoring.storage.results import open_results
from tests.conftest import write_config
from tests.storage.contract_helpers import run_record, write

DAYS = [dt.date(2026, 5, 1), dt.date(2026, 5, 2)]


@pytest.fixture()
def regression_report(tmp_path: Path):
    cfg = load_config(write_config(tmp_path, tmp_path / "source.duckdb", tmp_path / "models",
                                   model={"name": "house_price", "store": str(tmp_path / "models")}))
    store = open_results(cfg.results)
    store.ensure_schema()
    rng = np.random.default_rng(5)
    for i, day in enumerate(DAYS):
        n = 200
        rows = pa.table({"source_key": [f"k{j}" for j in range(n)], "score": rng.normal(250_000 + i * 10_000, 40_000, n),
                         "label": pa.nulls(n, pa.int8()), "predicted_class": pa.nulls(n, pa.string()),
                         "probabilities": pa.nulls(n, pa.string())})
        files = [write(tmp_path / f"chunk-{i}.parquet", rows)]
        run = run_record(f"r{i}", day, "house_price")
        run.rows_scored = n
        store.start_run(run)
        store.publish(run, files, [], extra=summarize(run, files, [], task="regression"))
    return load_report(cfg, store, DAYS[0], DAYS[-1])


def test_regression_report_shows_the_distribution(regression_report) -> None:
    data = regression_report
    assert data.task == "regression"
    bins = [b for b in data.sections["score_histogram"].to_pylist() if b["day"] == DAYS[-1]]
    day = next(r for r in data.daily.to_pylist() if r["day"] == DAYS[-1])
    assert bins[0]["bin_lo"] == day["score_min"] and bins[-1]["bin_hi"] == day["score_max"]
    page = render_html(data)
    assert "mean prediction" in page and "positive rate" not in page.lower()
    for chart in ("chart-score-distribution", "chart-score-over-time"):
        assert page.split(f'id="{chart}"')[1].split("</section>")[0].count("<svg") == 1, chart
    console = Console(width=200, record=True)
    for table in rich_tables(data, ("daily_summary",)):
        console.print(table)
    text = console.export_text()
    assert "min" in text and "max" in text and "pos.rate" not in text
    assert '"task": "regression"' in to_json(data)
