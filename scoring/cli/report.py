"""`scoring report` and `scoring drift`: read the report views and the drift table of a date range."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from scoring.cli.app import ConfigOpt, app, console, err, handle_errors, load, logger
from scoring.errors import ScoringError

REPORT_FORMATS = ("table", "csv", "json", "html")


@app.command()
@handle_errors
def report(start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
           end: Annotated[str, typer.Option(help="last day, inclusive")],
           config: ConfigOpt = None,
           model: Annotated[str | None, typer.Option(help="model name (default: the configured one)")] = None,
           fmt: Annotated[str, typer.Option("--format", "-f", help="table | csv | json | html")] = "table",
           out: Annotated[Path | None, typer.Option(help="write to this file (html default: "
                                                    "report-MODEL-START-END.html)")] = None,
           day: Annotated[str | None, typer.Option(help="day whose score distribution is compared with the "
                                                   "training reference (default: last scored day)")] = None,
           section: Annotated[list[str] | None, typer.Option(help="view(s) to output: daily_summary, "
                                                             "score_histogram, quarantine_summary, "
                                                             "drift_summary, run_history (csv: one; "
                                                             "default daily_summary)")] = None,
           refresh: Annotated[bool, typer.Option(help="recreate the views and rebuild missing summaries "
                                                 "first")] = False) -> None:
    """Report on the predictions of a date range from the report views (summaries kept at publish time)."""
    from scoring.dates import parse_day
    from scoring.reports.data import SECTIONS, load_report
    from scoring.storage.results import open_results

    if fmt not in REPORT_FORMATS:
        raise ScoringError(f"invalid --format {fmt!r}: use one of {', '.join(REPORT_FORMATS)}")
    unknown = [s for s in section or [] if s not in SECTIONS]
    if unknown:
        raise ScoringError(f"unknown --section {unknown[0]!r}: use one of {', '.join(SECTIONS)}")
    if fmt == "csv" and len(section or []) > 1:
        raise ScoringError("--format csv writes one section: give at most one --section")
    first, last = parse_day(start), parse_day(end)
    cfg = load(config)
    if refresh:
        from scoring.reports import refresh_reports

        logger.info("report views refreshed: %s", refresh_reports(cfg))
    data = load_report(cfg, open_results(cfg.results), first, last, model, parse_day(day) if day else None)
    chosen = tuple(section) if section else None
    for warning in data.warnings:
        err.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if fmt == "table":
        from scoring.reports.outputs import rich_tables

        # Piped or redirected output gets whole lines unless COLUMNS says the width; a terminal folds the
        # text columns to fit.
        screen = console if console.is_terminal or os.environ.get("COLUMNS") else Console(width=220)
        for note in data.notes:
            screen.print(f"[blue]note:[/] {note}", highlight=False, soft_wrap=True)
        for table in rich_tables(data, chosen):
            screen.print(table)
            screen.print()
        return
    if fmt == "html":
        from scoring.reports.html import render_html

        text = render_html(data, cfg.validation.psi_warn, cfg.validation.psi_alert)
        target = out or Path(f"report-{data.model}-{first}-{last}.html")
    else:
        from scoring.reports.outputs import to_csv, to_json

        text = to_csv(data, chosen[0] if chosen else "daily_summary") if fmt == "csv" else to_json(data, chosen)
        target = out
    if target is None:
        typer.echo(text, nl=False)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    err.print(f"wrote {fmt} report to {target}", highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def drift(start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
          end: Annotated[str, typer.Option(help="last day, inclusive")],
          config: ConfigOpt = None,
          feature: Annotated[str | None, typer.Option(help="only this feature (__score__ for the score)")] = None,
          only_flagged: Annotated[bool, typer.Option("--flagged", help="only warn and alert rows")] = False,
          as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """PSI per feature and for the score against the training reference, per day (the drift table)."""
    from scoring.dates import parse_day
    from scoring.quality.drift import drift_rows

    cfg = load(config)
    first, last = parse_day(start), parse_day(end)
    if last < first:
        raise ScoringError(f"end date {last} comes before start date {first}")
    rows = drift_rows(cfg, first, last, feature=feature, flagged=only_flagged)
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    dcfg = cfg.validation.drift
    out = Table(title=f"drift {first} .. {last} ({cfg.model.name}; {dcfg.method} thresholds, "
                      f"{dcfg.window_days}-day window)")
    for col in ("day", "v", "feature", "psi", "warn/alert at", "status"):
        out.add_column(col, justify="right" if col in ("psi", "warn/alert at") else "left",
                       no_wrap=col == "feature")

    def limits(r: dict) -> str:
        if r.get("basis") == "excluded":
            return "excluded"
        warn, alert = r.get("warn_at"), r.get("alert_at")
        shown = "-" if warn is None else f"{warn:.3g}/{alert:.3g}"
        return f"{shown} {(r.get('basis') or 'fixed')[:3]}"

    for r in rows:
        colour = {"ok": "green", "warn": "yellow", "alert": "red"}[r["status"]]
        out.add_row(str(r["day"]), str(r["model_version"]), r["feature"], f"{r['psi']:.4f}", limits(r),
                    f"[{colour}]{r['status']}")
    console.print(out)
    if not rows:
        err.print(f"no drift rows for {cfg.model.name} between {first} and {last}")
