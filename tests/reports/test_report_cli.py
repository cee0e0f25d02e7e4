"""`scoring report`: table/csv/json agree, the HTML file renders offline in headless Chromium, and mistakes,
empty ranges and failed runs give clear messages. The results come from real pipeline runs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import shutil
import struct
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.models.store import ModelStore
from scoring.reports import refresh_reports
from scoring.reports.data import load_report
from scoring.reports.html import render_html
from scoring.run import pipeline
from scoring.storage.results import duckdb_store, open_results
from tests.conftest import write_config
from tests.reports.browser import render
from tests.reports.test_views import publish_known, results_cfg

runner = CliRunner()
D = dt.date(2026, 3, 1)
FIRST, LAST = D, D + dt.timedelta(days=7)  # 03-01 .. 03-08
NULL_KEYS_DAY = D + dt.timedelta(days=2)  # 03-03: some source rows lose their key and are quarantined
FAILED_DAY = D + dt.timedelta(days=6)  # 03-07: the only run fails before commit
RETRIED_DAY = D + dt.timedelta(days=5)  # 03-06: one failed attempt, then a success
DRIFT_FEATURES = ("age", "annual_income", "credit_score")


def _boom(run) -> None:
    raise RuntimeError("injected crash before commit")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, sample_db: Path, trained_store: Path) -> Path:
    """Real runs: 03-02..03-04 with v1 (null keys on 03-03), 03-05..03-06 with v2 (03-06 retried after a
    failure), 03-07 failed; a drift table as the data-quality feature writes it; no runs on 03-01, 03-08."""
    folder = tmp_path_factory.mktemp("report")
    source = folder / "source.duckdb"
    shutil.copyfile(sample_db, source)
    with duckdb.connect(str(source)) as con:
        con.execute("UPDATE loan_applications SET application_id = NULL WHERE application_id IN ("
                    "SELECT application_id FROM loan_applications WHERE CAST(applied_at AS DATE) = $1 "
                    "ORDER BY application_id LIMIT 7)", [NULL_KEYS_DAY])
    store = folder / "models"
    shutil.copytree(trained_store, store)
    cfg_path = write_config(folder, source, store)
    cfg = load_config(cfg_path)
    for offset in (1, 2, 3):
        pipeline.run_day(cfg, D + dt.timedelta(days=offset))
    models = ModelStore(store)
    v1 = models.get("loan_default", 1)
    keep = {k: v for k, v in v1.meta.items() if k not in ("name", "version", "created_at", "sha256",
                                                           "sklearn_version")}
    models.register("loan_default", v1.artifact, keep)
    pipeline.run_day(cfg, D + dt.timedelta(days=4), version=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(duckdb_store, "before_commit", _boom)
        for day in (RETRIED_DAY, FAILED_DAY):
            with pytest.raises(RuntimeError):
                pipeline.run_day(cfg, day, version=2)
    pipeline.run_day(cfg, RETRIED_DAY, version=2)
    with duckdb.connect(str(cfg.results.path)) as con:
        # Known drift rows in place of what the runs computed, so the report's figures can be checked exactly.
        con.execute("DELETE FROM drift")
        for offset in range(1, 6):
            for i, feature in enumerate(DRIFT_FEATURES):
                psi = 0.05 * i + 0.04 * offset
                status = "alert" if psi >= 0.25 else "warn" if psi >= 0.1 else "ok"
                con.execute("INSERT INTO drift (run_id, day, model_name, model_version, feature, psi, status) "
                            "VALUES ('r', $1, 'loan_default', 1, $2, $3, $4)",
                            [D + dt.timedelta(days=offset), feature, psi, status])
    refresh_reports(cfg)
    return cfg_path


def _invoke(cfg_path: Path, *args: str):
    return runner.invoke(app, ["report", "--config", str(cfg_path), "--start", str(FIRST), "--end", str(LAST),
                               *args])


def _parse_table(text: str, title: str) -> list[list[str]]:
    """Rows of one Rich table (SIMPLE_HEAD box) from the terminal output: cells split on whitespace."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    sep = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("─"))
    out = []
    for line in lines[sep + 1:]:
        if not line.strip():
            break
        out.append(line.split())
    return out


def _num(value: float | int) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def test_table_csv_and_json_agree(results: Path) -> None:
    as_json = _invoke(results, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    sections = doc["sections"]
    daily = sections["daily_summary"]
    assert [r["day"] for r in daily] == [str(D + dt.timedelta(days=i)) for i in range(1, 6)]
    assert [r["model_version"] for r in daily] == [1, 1, 1, 2, 2]
    assert next(r for r in daily if r["day"] == str(NULL_KEYS_DAY))["rows_quarantined"] == 7
    assert doc["drift_available"] is True and len(sections["drift_summary"]) == 15
    assert any("2026-03-07: the latest run failed (RuntimeError: injected crash before commit)" in w
               for w in doc["warnings"])

    # CSV: every column of the view, full precision, equal to the JSON rows.
    for section in ("daily_summary", "score_histogram", "quarantine_summary", "drift_summary", "run_history"):
        res = _invoke(results, "--format", "csv", "--section", section)
        assert res.exit_code == 0, res.output
        rows = list(csv.DictReader(io.StringIO(res.stdout)))
        assert len(rows) == len(sections[section]) > 0, section
        for got, want in zip(rows, sections[section], strict=True):
            assert list(got) == list(want)
            for key, value in want.items():
                if value is None:
                    assert got[key] == ""
                elif isinstance(value, bool):
                    assert got[key] == str(value)
                elif isinstance(value, float):
                    assert float(got[key]) == value
                else:
                    assert got[key] == str(value), (section, key)

    # Terminal tables: the same rows, floats rounded to four decimals.
    res = _invoke(results, "--format", "table")
    assert res.exit_code == 0, res.output
    table = _parse_table(res.stdout, "daily_summary")
    cols = ["day", "model_version", "rows_scored", "rows_quarantined", "mean_score", "positive_rate", "score_p10",
            "score_p50", "score_p90"]
    assert table == [[_num(r[c]) for c in cols] for r in daily]
    assert _parse_table(res.stdout, "quarantine_summary") == [
        [r["day"], r["rule"], r["column_name"], str(r["count"])] for r in sections["quarantine_summary"]]
    assert _parse_table(res.stdout, "drift_summary") == [
        [r["day"], str(r["model_version"]), r["feature"], _num(r["psi"]), r["status"]]
        for r in sections["drift_summary"]]
    runs = _parse_table(res.stdout, "run_history")
    assert [r[:6] for r in runs] == [[r["day"], str(r["model_version"]), r["status"], str(r["rows_in"]),
                                      str(r["rows_rejected"]), str(r["rows_scored"])]
                                     for r in sections["run_history"]]
    assert "warning: 2026-03-07: the latest run failed" in res.stderr


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


CHART_FACTS = """(() => {
  const charts = [...document.querySelectorAll('section.chart')].map(s => {
    const svg = s.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : null;
    return {id: s.id, title: svg ? svg.querySelector('title').textContent : null,
            width: box ? box.width : 0, height: box ? box.height : 0,
            empty: s.querySelector('.empty') ? s.querySelector('.empty').textContent : null};
  });
  return {charts,
          versionChanges: [...document.querySelectorAll('[id*="version-change-"]')].map(e => e.id),
          failedDays: [...document.querySelectorAll('[id*="failed-day-"]')].map(e => e.id),
          failedRunMarks: document.querySelectorAll('[id$="-failed-runs"]').length,
          failedRows: document.querySelectorAll('#run-table tr.failed').length,
          runRows: document.querySelectorAll('#run-table tbody tr:not(.error-row)').length,
          errorRows: document.querySelectorAll('#run-table tbody tr.error-row').length,
          warnings: document.querySelector('#warnings') ? document.querySelector('#warnings').innerText : '',
          ids: [...document.querySelectorAll('[id]')].map(e => e.id)};
})()"""

EXPECTED_CHARTS = {
    "chart-rows-per-day": "Rows per day: scored vs quarantined",
    "chart-score-over-time": "Positive rate and score quantiles over time",
    "chart-score-distribution": "Score distribution vs the training reference",
    "chart-quarantine": "Quarantined rows by rule",
    "chart-drift": "Drift heatmap (feature × day)",
    "chart-run-history": "Run history",
}


def test_html_report_renders_offline_in_headless_chromium(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = _invoke(results, "--format", "html", "--out", str(out))
    assert res.exit_code == 0, res.output
    text = out.read_text()
    # One self-contained file: no scripts, no external references of any kind.
    for needle in ("<script", 'src="', "<link", "@import", "url(http", 'href="http'):
        assert needle not in text, needle
    page = render(out, CHART_FACTS, screenshot=tmp_path / "report.png")
    assert page.problems == []  # no uncaught exceptions, console errors, failed loads or network requests
    charts = {c["id"]: c for c in page.facts["charts"]}
    assert list(charts) == list(EXPECTED_CHARTS)
    for chart_id, title in EXPECTED_CHARTS.items():
        chart = charts[chart_id]
        assert chart["empty"] is None, chart
        assert chart["title"] == title
        assert chart["width"] > 800 and chart["height"] > 100, chart  # laid out, not collapsed
    assert len(page.facts["ids"]) == len(set(page.facts["ids"]))  # the inline SVGs do not clash
    assert page.facts["versionChanges"] == ["quantiles-version-change-2026-03-05-v2-0",
                                            "quantiles-version-change-2026-03-05-v2-1"]
    assert page.facts["failedDays"] == ["rows-failed-day-2026-03-07"]
    assert page.facts["failedRunMarks"] == 1
    assert (page.facts["failedRows"], page.facts["runRows"], page.facts["errorRows"]) == (2, 7, 2)
    assert "2026-03-07: the latest run failed" in page.facts["warnings"]
    assert "2026-03-06: 1 failed attempt(s), then a successful run" in page.facts["warnings"]
    assert "2 day(s) without any run: 2026-03-01, 2026-03-08" in page.facts["warnings"]
    assert page.dom.count("<svg") == len(EXPECTED_CHARTS)
    width, height = _png_size(page.screenshot)
    assert width >= 1380 and height >= 2000 and page.screenshot.stat().st_size > 50_000


def test_the_browser_check_catches_a_broken_page(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="missing.png"><script>console.error("boom"); nosuch();</script>'
                   "</body></html>")
    problems = render(bad, "document.title").problems
    assert any("nosuch is not defined" in p for p in problems)
    assert any(p.startswith("console.error: boom") for p in problems)
    assert any("missing.png" in p for p in problems)


def test_mistakes_and_empty_ranges_give_one_line(results: Path) -> None:
    cases = [
        (["--start", "2025-01-01", "--end", "2025-01-31"],
         "no runs of model 'loan_default' between 2025-01-01 and 2025-01-31"),
        (["--start", str(FIRST), "--end", str(LAST), "--model", "nope"], "unknown model 'nope'"),
        (["--start", "2026-03-08", "--end", "2026-03-01"], "end date 2026-03-01 comes before start date"),
        (["--start", "2026-03-32", "--end", "2026-04-01"], "invalid date '2026-03-32'"),
        (["--start", str(FIRST), "--end", str(LAST), "--format", "pdf"], "invalid --format 'pdf'"),
        (["--start", str(FIRST), "--end", str(LAST), "--section", "nope"], "unknown --section 'nope'"),
        (["--start", str(FIRST), "--end", str(LAST), "--day", "2026-04-01"], "is outside the report range"),
    ]
    for args, message in cases:
        res = runner.invoke(app, ["report", "--config", str(results), *args])
        assert res.exit_code == 1, (args, res.output)
        assert message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_a_range_with_only_a_failed_run_says_so(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "failed.html"
    res = runner.invoke(app, ["report", "--config", str(results), "--start", str(FAILED_DAY), "--end",
                              str(FAILED_DAY), "--format", "html", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "the latest run failed (RuntimeError: injected crash before commit); no predictions are published" \
        in res.stderr
    text = out.read_text()
    assert 'id="warnings"' in text and "no predictions are published for this day" in text
    assert "Positive rate and score quantiles over time: no scored rows in this range." in text
    assert 'class="failed"' in text and "<svg" in text  # the run history still draws the failure
    res = runner.invoke(app, ["report", "--config", str(results), "--start", str(FAILED_DAY), "--end",
                              str(FAILED_DAY)])
    assert res.exit_code == 0 and "daily_summary" in res.stdout and "no published predictions" in res.stdout


def test_without_drift_table_or_reference_the_page_says_so(tmp_path: Path) -> None:
    cfg = results_cfg(tmp_path, {"kind": "duckdb", "path": str(tmp_path / "results.duckdb"),
                                 "staging_dir": str(tmp_path / "staging")})
    store = open_results(cfg.results)
    publish_known(store, tmp_path / "stage")
    with store.connect() as con:  # results written before drift monitoring existed
        con.execute("DROP TABLE IF EXISTS drift")
        from scoring.storage.results.views import create_duckdb_views

        create_duckdb_views(con)
    data = load_report(cfg, store, dt.date(2026, 4, 1), dt.date(2026, 4, 3), model="m")
    assert not data.drift_available and data.day == dt.date(2026, 4, 2)
    page = render_html(data)
    assert "Drift heatmap (feature × day): drift monitoring is not installed in these results (no drift table)." \
        in page
    assert "no training reference for v1" in page and "no training reference for v2" in page
