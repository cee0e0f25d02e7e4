"""Terminal (Rich), CSV and JSON renderings of a report; all three show the same rows of the same views."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from scoring.reports.data import ReportData

# Columns shown in the terminal (every column goes to CSV and JSON).
TERMINAL_COLUMNS = {
    "daily_summary": ["day", "model_version", "rows_scored", "rows_quarantined", "mean_score", "positive_rate",
                      "score_p10", "score_p50", "score_p90"],
    "score_histogram": ["day", "model_version", "bin", "bin_lo", "bin_hi", "count", "share"],
    "quarantine_summary": ["day", "rule", "column_name", "count"],
    "drift_summary": ["day", "model_version", "feature", "psi", "status"],
    # Fits 80 columns: staged and is_latest are in the csv/json; errors print under the table.
    "run_history": ["day", "model_version", "status", "rows_in", "rows_rejected", "rows_scored", "started_at",
                    "duration_s", "trigger"],
    "performance": ["day", "model_version", "role", "rows_scored", "labelled", "coverage", "labels_quarantined",
                    "realized", "estimated", "status"],
    "challengers": ["day", "model_version", "champion_version", "rows_in", "quarantined", "champion_quarantined",
                    "rank_correlation", "top_decile_overlap", "psi"],
}
# A regression model has no positives: its daily rows show the predictions' range instead.
REGRESSION_DAILY = ["day", "model_version", "rows_scored", "rows_quarantined", "mean_score", "score_min",
                    "score_p10", "score_p50", "score_p90", "score_max"]
TEXT_COLUMNS = {"rule", "column_name", "feature", "error", "status", "trigger", "started_at", "role", "realized",
                "estimated"}
HEADERS = {"model_version": "ver", "rows_scored": "scored", "rows_staged": "staged", "rows_quarantined": "quar.",
           "mean_score": "mean", "positive_rate": "pos.rate", "score_p10": "p10", "score_p50": "p50",
           "score_p90": "p90", "score_min": "min", "score_max": "max", "column_name": "column", "rows_in": "in", "rows_rejected": "rejected",
           "started_at": "started UTC", "duration_s": "secs", "is_latest": "latest",
           "labels_quarantined": "labels quar.", "champion_version": "champ", "quarantined": "quar.",
           "champion_quarantined": "champ quar.", "rank_correlation": "rank corr",
           "top_decile_overlap": "top 10%", "mean_diff": "mean diff", "positive_rate_diff": "pos. rate diff"}
TERMINAL_DEFAULT = ("daily_summary", "quarantine_summary", "drift_summary", "performance", "run_history")
HEADLINE = {"binary": ("roc_auc", "accuracy"), "multiclass": ("accuracy", "log_loss"), "regression": ("rmse", "mae")}
FLOAT_DIGITS = 4


def plain(value: Any) -> Any:
    """A JSON/CSV-friendly value: ISO dates and timestamps, everything else unchanged."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def rows(data: ReportData, section: str) -> list[dict[str, Any]]:
    """The rows of one section with plain values."""
    return [{k: plain(v) for k, v in r.items()} for r in data.sections[section].to_pylist()]


def to_json(data: ReportData, sections: tuple[str, ...] | None = None) -> str:
    """The report as one JSON document: identity, warnings, notes and every section's rows."""
    chosen = sections or tuple(data.sections)
    return json.dumps({**data.meta(), "sections": {s: rows(data, s) for s in chosen}}, indent=2)


def to_csv(data: ReportData, section: str) -> str:
    """One section as CSV with a header row (empty values for NULL)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=data.sections[section].column_names, lineterminator="\n")
    writer.writeheader()
    for row in rows(data, section):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def cell(value: Any) -> str:
    """How a value prints in the terminal: floats rounded, timestamps to the second, NULL as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{FLOAT_DIGITS}f}"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if value.tzinfo else str(value)[:19]
    return str(plain(value))


def terminal_columns(data: ReportData, section: str) -> list[str]:
    """The columns of ``section`` shown in the terminal (and the HTML tables) for the report's model task."""
    if section == "daily_summary" and data.task == "regression":
        return REGRESSION_DAILY
    return TERMINAL_COLUMNS[section]


def rich_tables(data: ReportData, sections: tuple[str, ...] | None = None) -> list[Table | Text]:
    """A Rich table per section (failed runs in red); an empty section is one line saying why."""
    out = []
    for section in sections or TERMINAL_DEFAULT:
        tbl = data.sections[section]
        title = f"{section} — {data.model} {data.start} .. {data.end} ({tbl.num_rows} rows)"
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0),
                      show_edge=False)
        columns = terminal_columns(data, section)
        records = performance_rows(tbl.to_pylist()) if section == "performance" else tbl.to_pylist()
        cells = [[_terminal_cell(c, r[c]) for c in columns] for r in records]
        for i, col in enumerate(columns):
            text = col in TEXT_COLUMNS
            # Numbers and days never wrap; only the text columns fold when the terminal is narrow.
            widest = max([len(HEADERS.get(col, col)), *(len(row[i]) for row in cells)])
            table.add_column(HEADERS.get(col, col), overflow="fold", justify="left" if text else "right",
                             min_width=None if text else widest)
        for r, row in zip(records, cells, strict=True):
            style = "red" if (section == "run_history" and r["status"] != "success") or \
                (section == "performance" and r["status"] == "alert") else None
            table.add_row(*row, style=style)
        out.append(table if tbl.num_rows else Text(f"{title}: {empty_reason(data, section)}", style="italic"))
        errors = [f"{r['day']} {r['run_id']}: {r['error']}" for r in tbl.to_pylist()
                  if section == "run_history" and r.get("error")]
        if errors:  # under the table, whole (a cell would squeeze them to a few characters)
            out.append(Text("\n".join(["errors:", *errors]), style="red"))
    return out


def _terminal_cell(column: str, value: Any) -> str:
    """``cell`` for the terminal tables; a start time is shortened to MM-DD HH:MM (UTC) to fit 80 columns."""
    if column == "started_at" and isinstance(value, dt.datetime):
        return cell(value)[5:16]
    return cell(value)


def empty_reason(data: ReportData, section: str) -> str:
    """Why a section has no rows in this range."""
    if section == "drift_summary" and not data.drift_available:
        return "drift monitoring is not installed in these results (no drift table)"
    return {"daily_summary": "no published predictions in this range",
            "score_histogram": "no scored rows in this range",
            "quarantine_summary": "no quarantined rows in this range",
            "drift_summary": "no drift figures in this range",
            "run_history": "no runs in this range",
            "performance": "no outcomes in this range (run `scoring outcomes`; it needs a labels section)",
            "challengers": "no challenger was shadow-scored in this range (list them under model.challengers)",
            }[section]


def performance_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Performance rows with ``realized`` and ``estimated`` as short text: the task's headline metrics from
    the JSON columns (realized on the labelled rows, CBPE's estimate side by side, so a user sees how good
    the estimate was once labels arrived)."""
    out = []
    for r in records:
        names = HEADLINE.get(r.get("task") or "binary", ())
        realized = json.loads(r["metrics"]) if r.get("metrics") else {}
        estimated = json.loads(r["estimated"]) if r.get("estimated") else {}
        out.append({**r, "realized": ", ".join(f"{k} {realized[k]:.4f}" for k in names if k in realized),
                    "estimated": ", ".join(f"{k} {estimated[k]:.4f}" for k in names if k in estimated)})
    return out
