"""Data Docs off the scoring path: `scoring run` never imports GX; `scoring docs` builds a run's page from the
ledger; the pages load their CSS/JS from vendored copies and render styled in Chromium with no network."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.quality.batch_rules import QualityReport
from scoring.quality.offline import ASSETS, VENDORED
from scoring.run import pipeline
from tests.conftest import SCORE_DAY, write_config
from tests.quality.helpers import CLEAN_DAY, last_run
from tests.reports.browser import render

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
CDN = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"https?://", re.I)

# Runs the real CLI entry point in a fresh interpreter, then reports which GX modules it loaded.
CLI_PROBE = """
import json, sys
from scoring.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("PROBE " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "great_expectations")))
"""


def test_scoring_run_imports_no_great_expectations(cfg_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false"}
    out = subprocess.run([sys.executable, "-c", CLI_PROBE, "run", "--config", str(cfg_path), "--date", str(SCORE_DAY)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.rsplit("PROBE ", 1)[1])
    assert loaded == [], loaded[:5]
    run = last_run(load_config(cfg_path).results.path)
    assert run["status"] == "success" and "data_docs" not in run["details"]
    assert not (cfg_path.parent / "data_docs").exists()
    assert "data_docs_s" not in run["details"]["timings"]


def test_scoring_docs_builds_the_page_from_the_ledger(tmp_path: Path, sample_db: Path, store: Path) -> None:
    cfg_path = write_config(tmp_path, sample_db, store)
    cfg = load_config(cfg_path)
    first = pipeline.run_day(cfg, SCORE_DAY)
    second = pipeline.run_day(cfg, SCORE_DAY)
    other_day = pipeline.run_day(cfg, CLEAN_DAY)
    details = last_run(cfg.results.path)["details"]
    assert "outcomes" in details["validation"] and details["suite_sha256"]
    res = runner.invoke(app, ["docs", "--config", str(cfg_path), "--day", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().replace("\n", ""))
    site = tmp_path / "data_docs" / "loan_default"
    assert page.is_file() and page.is_relative_to(site)
    html = page.read_text()
    assert second.run_id in html and first.run_id not in html and "loan_default_v1" in html  # the day's latest
    assert "PR" in html and "GU" in html  # the unseen-levels warning's sample of unexpected values
    assert (site / "expectations" / "loan_default_v1.html").is_file()
    by_run = runner.invoke(app, ["docs", "--config", str(cfg_path), "--run", first.run_id])
    assert by_run.exit_code == 0 and first.run_id in Path(by_run.output.strip().replace("\n", "")).read_text()
    latest = runner.invoke(app, ["docs", "--config", str(cfg_path)])
    assert latest.exit_code == 0 and other_day.run_id in Path(latest.output.strip().replace("\n", "")).read_text()
    index = (site / "index.html").read_text()
    assert first.run_id in index and second.run_id in index  # the index lists every run built
    # Every page is offline: no script, stylesheet or image from the network; the assets are in the site.
    for html_file in site.rglob("*.html"):
        if ".gx_stores" not in html_file.parts:
            assert not CDN.search(html_file.read_text()), html_file
    assert {p.relative_to(ASSETS) for p in ASSETS.rglob("*") if p.is_file()} <= {
        p.relative_to(site / "static" / "vendor") for p in (site / "static" / "vendor").rglob("*") if p.is_file()}
    # The ledger round trip gives back exactly what the run evaluated.
    report = QualityReport.from_details(details["validation"], 600)
    assert report.details() == {k: v for k, v in details["validation"].items() if k not in ("outcomes", "batch")}
    # Mistakes are one line.
    for args, message in ((["--day", "2026-01-01"], "no run of loan_default on 2026-01-01"),
                          (["--run", "nope"], "run 'nope' is not in the run ledger"),
                          (["--day", "2026-03-07", "--run", "x"], "give --day or --run, not both")):
        bad = runner.invoke(app, ["docs", "--config", str(cfg_path), *args])
        assert bad.exit_code == 1 and message in bad.output and "Traceback" not in bad.output, bad.output


def test_data_docs_render_styled_offline_in_chromium(tmp_path: Path, sample_db: Path, store: Path) -> None:
    cfg = load_config(write_config(tmp_path, sample_db, store))
    pipeline.run_day(cfg, SCORE_DAY)
    res = runner.invoke(app, ["docs", "--config", str(cfg.path), "--day", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().replace("\n", ""))
    script = """(() => {
      const css = (sel, prop, pseudo) => { const e = document.querySelector(sel);
                                           return e ? getComputedStyle(e, pseudo || null)[prop] : null; };
      return {
        sheets: [...document.styleSheets].map(s => s.href).filter(Boolean),
        navbar: css('nav.navbar', 'display'), tableCollapse: css('table.table', 'borderCollapse'),
        tablePad: css('table.table td', 'paddingTop'), icon: css('.fas', 'fontFamily', '::before'),
        jquery: typeof window.jQuery, bootstrapTable: !!(window.jQuery && window.jQuery.fn.bootstrapTable),
        collapse: !!(window.jQuery && window.jQuery.fn.collapse),
        logo: [...document.images].map(i => [i.src, i.naturalWidth]),
      };
    })()"""
    for html in (page, tmp_path / "data_docs" / "loan_default" / "index.html"):
        seen = render(html, script, screenshot=tmp_path / f"{html.stem}.png")
        facts = seen.facts
        assert seen.problems == [], seen.problems  # no request left the machine, nothing failed to load
        assert facts["sheets"] and all(s.startswith("file:") for s in facts["sheets"]), facts["sheets"]
        assert facts["navbar"] == "flex"  # Bootstrap's .navbar
        assert facts["tableCollapse"] == "collapse" and facts["tablePad"] in ("12px", "4.8px")  # .table(-sm) td
        assert "Font Awesome 6 Free" in facts["icon"]
        assert facts["jquery"] == "function" and facts["bootstrapTable"] and facts["collapse"]
        assert facts["logo"] and all(src.startswith("file:") and w > 0 for src, w in facts["logo"]), facts["logo"]


def test_every_vendored_url_has_its_file() -> None:
    assert all(name == "" or (ASSETS / name).is_file() for name in VENDORED.values())
    assert (ASSETS.parent / "README.md").is_file() and len(list((ASSETS.parent / "licenses").iterdir())) >= 5
