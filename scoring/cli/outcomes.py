"""`scoring outcomes`: join the labels that arrived to the published predictions, per day and version."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from scoring.cli.app import ConfigOpt, app, console, err, handle_errors, load


@app.command()
@handle_errors
def outcomes(start: Annotated[str | None, typer.Option(help="first scoring day (default: labels.max_delay_days "
                                                      "before --end)")] = None,
             end: Annotated[str | None, typer.Option(help="last scoring day, inclusive (default: yesterday)")] = None,
             config: ConfigOpt = None) -> None:
    """Realized (and, for binary classifiers, estimated) performance per scoring day and model version, written
    to the `outcomes` table; labels of keys never scored are counted in `label_coverage`."""
    import datetime as dt

    from scoring.cli.app import day_or_yesterday
    from scoring.dates import parse_day
    from scoring.run.outcomes import compute_outcomes

    cfg = load(config)
    last = day_or_yesterday(end, cfg.timezone)
    delay = cfg.labels.max_delay_days if cfg.labels else 0
    first = parse_day(start) if start else last - dt.timedelta(days=delay)
    result = compute_outcomes(cfg, first, last)
    table = Table(title=f"outcomes of {cfg.model.name}, {first}..{last}")
    for col in ("day", "version", "role", "scored", "labelled", "coverage", "quarantined", "realized",
                "estimated", "status"):
        table.add_column(col)
    for row in result.outcomes:
        if not row["labelled"] and not row["estimated"]:
            continue
        est = json.loads(row["estimated"]) if row["estimated"] else {}
        table.add_row(str(row["day"]), str(row["model_version"]), row["role"], str(row["rows_scored"]),
                      str(row["labelled"]), f"{row['coverage']:.1%}" if row["coverage"] is not None else "",
                      str(row["labels_quarantined"]),
                      ", ".join(f"{k} {v:.4f}" for k, v in json.loads(row["metrics"]).items()
                                if k not in ("rows", "unlabelled_rows")),
                      ", ".join(f"{k} {est[k]:.4f}" for k in ("roc_auc", "accuracy") if k in est),
                      row["status"] or "")
    console.print(table)
    unscored = sum(r["unscored"] for r in result.coverage)
    quarantined = sum(r["quarantined"] for r in result.coverage)
    console.print(f"{result.labels_read} labels read; {unscored} for keys never scored, {quarantined} for "
                  f"quarantined rows only ({len(result.outcomes)} (day, version) rows written)")
    alerts = [r for r in result.outcomes if r["status"] in ("warning", "alert")]
    for row in alerts:
        err.print(f"[bold yellow]{row['status']}:[/] {row['day']} v{row['model_version']}: {row['alerts']}",
                  highlight=False, soft_wrap=True)
