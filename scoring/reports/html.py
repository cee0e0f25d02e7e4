"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no external resources)."""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import Callable
from typing import Any

from scoring.reports import charts
from scoring.reports.data import ReportData
from scoring.reports.outputs import cell, empty_reason, performance_rows, terminal_columns

logger = logging.getLogger(__name__)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #555; } .chart svg { width: 100%; height: auto; }
.warnings { background: #fdecea; border-left: 4px solid #c44e52; padding: 8px 16px; }
.notes { background: #eef3fb; border-left: 4px solid #4c72b0; padding: 8px 16px; }
.warnings, .notes { overflow-wrap: anywhere; }
.empty { color: #555; font-style: italic; border: 1px dashed #bbb; padding: 16px; }
table { border-collapse: collapse; font-size: 0.85em; margin: 8px 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
td.text { white-space: normal; }
td.error { overflow-wrap: anywhere; color: #8b1c1c; padding-left: 2em; }
tr.error-row td { border-bottom: 1px solid #ddd; }
table.runs { width: 100%; }
th { background: #f4f4f4; } td.text { text-align: left; }
tr.failed td { background: #fdecea; color: #8b1c1c; font-weight: 600; }
.kpis td { font-size: 1.1em; } figure { margin: 0; }
"""

RUN_COLUMNS = ["day", "model_version", "status", "rows_in", "rows_rejected", "rows_scored", "rows_staged",
               "started_at", "duration_s", "trigger", "is_latest", "error"]
DAILY_COLUMNS = ["day", "model_version", "rows_scored", "rows_quarantined", "mean_score", "positive_rate",
                 "score_p10", "score_p50", "score_p90"]


CHALLENGER_COLUMNS = ["day", "model_version", "champion_version", "rows_in", "quarantined", "champion_quarantined",
                      "rules", "rank_correlation", "top_decile_overlap", "mean_diff", "positive_rate_diff", "psi"]
CHALLENGER_HEADERS = {"model_version": "challenger", "champion_version": "champion", "rows_in": "rows in",
                      "quarantined": "quarantined (own gate)", "champion_quarantined": "champion quarantined",
                      "rules": "its rules", "rank_correlation": "rank corr.", "top_decile_overlap": "top 10% overlap",
                      "mean_diff": "mean diff", "positive_rate_diff": "pos. rate diff"}


def _quarantined_more(row: dict[str, Any]) -> bool:
    """A challenger that set aside a larger share of the run's rows than the champion (highlighted)."""
    if not row.get("rows_in") or not row.get("champion_rows_in") or row.get("quarantined") is None:
        return False
    return row["quarantined"] / row["rows_in"] > (row.get("champion_quarantined") or 0) / row["champion_rows_in"]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


ERROR_CHARS = 300  # an error cell shows this much; the whole text is in its title (hover)


def _error_cell(error: Any, span: int) -> str:
    """An error in a cell spanning ``span`` columns that wraps anywhere (a path or a token without spaces
    must not widen the table), cut at ``ERROR_CHARS`` with the full text in the title."""
    text = cell(error)
    shown = text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 1] + "…"
    return f'<td class="text error" colspan="{span}" title="{_e(text)}">{_e(shown)}</td>'


RUN_HEADERS = {"model_version": "version", "rows_in": "rows in", "rows_rejected": "quarantined",
               "rows_scored": "scored", "rows_staged": "staged", "started_at": "started (UTC)",
               "duration_s": "seconds", "is_latest": "latest"}


def _table(rows: list[dict[str, Any]], columns: list[str], css: str, failed: Callable[[dict], bool],
           headers: dict[str, str] | None = None) -> str:
    """An HTML table of ``rows``; an ``error`` column is not a column but a row under each row that has one,
    spanning the table (an error is a sentence: in a column it squeezed its cell and stretched the row)."""
    shown = [c for c in columns if c != "error"]
    head = "".join(f"<th>{_e((headers or {}).get(c, c))}</th>" for c in shown)
    body = []
    for r in rows:
        cls = ' class="failed"' if failed(r) else ""
        cells = "".join(f'<td class="text">{_e(cell(r[c]))}</td>' if c in ("status", "trigger")
                        else f"<td>{_e(cell(r[c]))}</td>" for c in shown)
        body.append(f"<tr{cls}>{cells}</tr>")
        if "error" in columns and cell(r["error"]):
            body.append(f'<tr class="error-row">{_error_cell(r["error"], len(shown))}</tr>')
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _chart(chart_id: str, caption: str, draw: Callable[[], str]) -> str:
    try:
        svg = draw()
        svg = svg.replace("<svg ", f'<svg role="img" aria-labelledby="{chart_id}-title" ', 1)
        svg = svg.replace(">", f'><title id="{chart_id}-title">{_e(caption)}</title>', 1)
        body = svg
    except charts.NoData as exc:
        body = f'<p class="empty">{_e(caption)}: {_e(exc)}.</p>'
    return (f'<section class="chart" id="{chart_id}" data-chart="{chart_id}"><h2>{_e(caption)}</h2>'
            f"<figure>{body}</figure></section>")


def _kpis(data: ReportData) -> str:
    daily, runs = data.daily.to_pylist(), data.runs.to_pylist()
    scored = sum(r["rows_scored"] for r in daily)
    quarantined = sum(r["rows_quarantined"] for r in daily)
    positives = sum(r["positives"] for r in daily)
    versions = sorted({r["model_version"] for r in daily})
    failed = sum(1 for r in runs if r["status"] != "success")
    if data.task == "regression":
        total = sum(r["mean_score"] * r["rows_scored"] for r in daily if r["rows_scored"])
        lows = [r["score_min"] for r in daily if r["rows_scored"]]
        highs = [r["score_max"] for r in daily if r["rows_scored"]]
        rate = [("mean prediction", f"{total / scored:.4g}" if scored else "–"),
                ("range", f"{min(lows):.4g} .. {max(highs):.4g}" if lows else "–")]
    else:
        rate = [("positive rate", f"{positives / scored:.4f}" if scored and data.task == "binary" else "–")]
    items = [("days with predictions", sum(1 for r in daily if r["rows_scored"])), ("rows scored", f"{scored:,}"),
             ("rows quarantined", f"{quarantined:,}"), *rate,
             ("model versions", ", ".join(f"v{v}" for v in versions) or "–"), ("runs", len(runs)),
             ("failed runs", failed)]
    return ('<table class="kpis"><tbody><tr>' + "".join(f"<th>{_e(k)}</th>" for k, _ in items) + "</tr><tr>"
            + "".join(f"<td>{_e(v)}</td>" for _, v in items) + "</tr></tbody></table>")


def render_html(data: ReportData, psi_warn: float = 0.1, psi_alert: float = 0.25,
                generated_at: dt.datetime | None = None) -> str:
    """The whole report page.

    Args:
        data: the loaded report.
        psi_warn: PSI marked as a warning on the drift heatmap's scale.
        psi_alert: PSI at which drift cells are outlined.
        generated_at: shown in the header (default now, UTC).
    """
    daily, runs = data.daily.to_pylist(), data.runs.to_pylist()
    start, end = data.start, data.end
    bins = [b for b in data.sections["score_histogram"].to_pylist() if b["day"] == data.day]
    version = next((r["model_version"] for r in daily if r["day"] == data.day), None)
    drift_rows = data.sections["drift_summary"].to_pylist()
    generated = (generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>Scoring report — {_e(data.model)}</h1>",
             f'<p class="meta">{_e(start)} .. {_e(end)} · results: {_e(data.results)} · generated {generated}</p>']
    if data.warnings:
        parts.append('<div class="warnings" role="alert" id="warnings"><strong>Attention</strong><ul>'
                     + "".join(f"<li>{_e(w)}</li>" for w in data.warnings) + "</ul></div>")
    if data.notes:
        parts.append('<div class="notes" id="notes"><ul>' + "".join(f"<li>{_e(n)}</li>" for n in data.notes)
                     + "</ul></div>")
    parts.append(_kpis(data))
    parts.append(_chart("chart-rows-per-day", "Rows per day: scored vs quarantined",
                        lambda: charts.rows_per_day(daily, runs, start, end)))
    task = data.task
    regression = task == "regression"
    parts.append(_chart("chart-score-over-time", "Mean and quantiles of the predictions over time" if regression
                        else "Positive rate and score quantiles over time",
                        lambda: charts.score_over_time(daily, start, end, task)))
    parts.append(_chart("chart-score-distribution", "Distribution of the predictions" if regression
                        else "Score distribution vs the training reference",
                        lambda: charts.score_distribution(bins, data.day, version, data.references.get(version),
                                                          task)))
    parts.append(_chart("chart-quarantine", "Quarantined rows by rule",
                        lambda: charts.quarantine_by_rule(data.sections["quarantine_summary"].to_pylist())))

    def drift() -> str:
        if not data.drift_available:
            raise charts.NoData(empty_reason(data, "drift_summary"))
        return charts.drift_heatmap(drift_rows, start, end, psi_warn, psi_alert)

    parts.append(_chart("chart-drift", "Drift heatmap (feature × day)", drift))
    performance = performance_rows(data.sections["performance"].to_pylist())
    parts.append('<section id="performance"><h2>Performance: realized (labels joined) and estimated (CBPE)</h2>'
                 + (_table(performance, terminal_columns(data, "performance"), "performance",
                           lambda r: r["status"] == "alert") if performance
                    else f'<p class="empty">{_e(empty_reason(data, "performance"))}.</p>') + "</section>")
    challengers = data.sections["challengers"].to_pylist()
    parts.append('<section id="challengers"><h2>Challengers: shadow scoring beside the champion, and what each '
                 'did not score</h2>'
                 + (_table(challengers, CHALLENGER_COLUMNS, "challengers", _quarantined_more, CHALLENGER_HEADERS)
                    if challengers else f'<p class="empty">{_e(empty_reason(data, "challengers"))}.</p>')
                 + "</section>")
    parts.append(_chart("chart-run-history", "Run history", lambda: charts.run_timeline(runs, start, end)))
    parts.append('<section id="run-table"><h2>Runs</h2>'
                 + (_table(sorted(runs, key=lambda r: (str(r["day"]), str(r["started_at"]))), RUN_COLUMNS, "runs",
                           lambda r: r["status"] != "success", RUN_HEADERS) if runs
                    else f'<p class="empty">{_e(empty_reason(data, "run_history"))}.</p>') + "</section>")
    parts.append('<section id="daily-table"><details><summary>Daily summary rows</summary>'
                 + (_table(daily, DAILY_COLUMNS if not regression else terminal_columns(data, "daily_summary"),
                           "daily", lambda r: False) if daily
                    else f'<p class="empty">{_e(empty_reason(data, "daily_summary"))}.</p>')
                 + "</details></section>")
    title = f"Scoring report {data.model} {start} .. {end}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
