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


def test_refresh_rebuilds_a_regression_partition_with_its_task_and_range(tmp_path: Path) -> None:
    from scoring.reports import refresh_reports

    cfg = load_config(write_config(tmp_path, tmp_path / "source.duckdb", tmp_path / "models"))
    store = open_results(cfg.results)
    store.ensure_schema()
    rows = pa.table({"source_key": ["a", "b", "c"], "score": [-10.0, 5.0, 30.0], "label": pa.nulls(3, pa.int8()),
                     "predicted_class": pa.nulls(3, pa.string()), "probabilities": pa.nulls(3, pa.string())})
    run = run_record("r", DAYS[0], cfg.model.name)
    store.start_run(run)
    store.publish(run, [write(tmp_path / "chunk.parquet", rows)], [])  # no summaries passed
    assert refresh_reports(cfg)["summaries_rebuilt"] == 1
    stats = store.query("SELECT task, positives, positive_rate FROM daily_summary").to_pylist()
    assert stats == [{"task": "regression", "positives": 0, "positive_rate": None}]
    bins = store.query("SELECT bin, bin_lo, bin_hi, count FROM score_histogram ORDER BY bin").to_pylist()
    assert len(bins) == 20 and (bins[0]["bin_lo"], bins[-1]["bin_hi"]) == (-10.0, 30.0)
    assert {b["bin"]: b["count"] for b in bins if b["count"]} == {0: 1, 7: 1, 19: 1}
