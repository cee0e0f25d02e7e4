"""The HTML report page in Chromium at 1,400 px: a successful 0-row day is not a day with predictions, a long
error does not widen the page, and the model-version marker is not hidden under the legend."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.models.store import ModelStore
from scoring.run import pipeline
from scoring.storage.results import duckdb_store
from tests.conftest import START, write_config
from tests.reports.browser import render

runner = CliRunner()
EMPTY = START + dt.timedelta(days=2)  # its source rows are deleted: a successful run of 0 rows
FAILED = START + dt.timedelta(days=3)
LONG_ERROR = "cannot_open_/" + "very_long_path_segment_without_spaces/" * 40 + "results.duckdb"

PAGE_FACTS = """(() => {
  const kpis = [...document.querySelectorAll('table.kpis th')].map(th => th.textContent);
  const values = [...document.querySelectorAll('table.kpis td')].map(td => td.textContent);
  const box = id => { const e = document.getElementById(id); if (!e) return null;
                      const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const errors = [...document.querySelectorAll('#run-table td.error')].filter(td => td.title);
  return {kpis: Object.fromEntries(kpis.map((k, i) => [k, values[i]])),
          pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth,
          runTableRight: document.querySelector('#run-table table').getBoundingClientRect().right,
          errorTitles: errors.map(td => td.title), errorTexts: errors.map(td => td.textContent),
          errorSpans: errors.map(td => td.colSpan),
          runColumns: document.querySelectorAll('#run-table thead th').length,
          errorUnder: errors.map(td => td.parentElement.previousElementSibling.cells[0].textContent),
          errorRowHeights: errors.map(td => td.parentElement.previousElementSibling.getBoundingClientRect().height),
          legend: box('quantiles-legend_1'),
          labels: [...document.querySelectorAll('[id^="quantiles-version-label-"]')].map(e => [e.id, box(e.id)])};
})()"""


def _crash(run) -> None:
    raise RuntimeError(LONG_ERROR)


@pytest.fixture()
def report_cfg(tmp_path: Path, sample_db: Path, store: Path) -> Path:
    source = tmp_path / "source.duckdb"
    shutil.copyfile(sample_db, source)
    with duckdb.connect(str(source)) as con:
        con.execute("DELETE FROM loan_applications WHERE CAST(applied_at AS DATE) = $1", [EMPTY])
    cfg_path = write_config(tmp_path, source, store)
    cfg = load_config(cfg_path)
    # v1 on the first day of the range: its marker is at the chart's left edge, where the legend sits.
    pipeline.run_day(cfg, START)
    v1 = ModelStore(store).get("loan_default", 1)
    ModelStore(store).register("loan_default", v1.artifact, {k: v for k, v in v1.meta.items() if k not in (
        "name", "version", "created_at", "sha256", "sklearn_version")})
    pipeline.run_day(cfg, START + dt.timedelta(days=1), version=2)
    assert pipeline.run_day(cfg, EMPTY, version=2).rows_in == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(duckdb_store, "before_commit", _crash)
        with pytest.raises(RuntimeError):
            pipeline.run_day(cfg, FAILED, version=2)
    return cfg_path


def test_report_page_counts_days_wraps_errors_and_keeps_version_labels_clear(report_cfg: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", "--config", str(report_cfg), "--start", str(START), "--end", str(FAILED),
                              "--format", "html", "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = render(out, PAGE_FACTS, screenshot=tmp_path / "report.png", width=1400)
    facts = page.facts
    assert page.problems == []
    assert facts["kpis"]["days with predictions"] == "2"  # 03-01 and 03-02; 03-03 scored 0 rows
    assert facts["viewport"] == 1400 and facts["pageWidth"] <= 1400 and facts["runTableRight"] <= 1400, facts
    assert any(LONG_ERROR in t for t in facts["errorTitles"]), facts["errorTitles"]  # the full text on hover
    assert all(len(t) <= 300 for t in facts["errorTexts"])
    # each error is a row of its own under its run's row, across the table; the run's row stays one line
    assert facts["errorUnder"] == [str(FAILED)] and facts["errorSpans"] == [facts["runColumns"]], facts
    assert all(h < 40 for h in facts["errorRowHeights"]), facts["errorRowHeights"]
    legend, labels = facts["legend"], dict(facts["labels"])
    assert legend and set(labels) == {"quantiles-version-label-v1", "quantiles-version-label-v2"}, facts
    for name, (left, top, right, bottom) in labels.items():
        overlaps = left < legend[2] and right > legend[0] and top < legend[3] and bottom > legend[1]
        assert not overlaps, (name, labels[name], legend)
