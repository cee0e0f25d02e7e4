"""`scoring models evaluate | check | compare` and the promotion gate behind `scoring models promote`."""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from scoring.cli.app import ConfigOpt, console, err, handle_errors, load, models_app
from scoring.errors import ScoringError

StartOpt = Annotated[str | None, typer.Option(help="first day of the window (default: promotion.window_days "
                                              "before today)")]
EndOpt = Annotated[str | None, typer.Option(help="last day of the window, inclusive (default: yesterday)")]


def _day(text: str | None) -> Any:
    from scoring.dates import parse_day

    return parse_day(text) if text else None


@models_app.command("evaluate")
@handle_errors
def models_evaluate(name: str, version: Annotated[int | None, typer.Option(help="candidate (default: the "
                                                                           "champion alone)")] = None,
                    start: StartOpt = None, end: EndOpt = None, config: ConfigOpt = None) -> None:
    """Metrics of a version and the champion on the same labelled rows of a window, through the production
    scoring path; recorded in the model's evaluations log and printed side by side."""
    from scoring.models.store import ModelStore
    from scoring.run.evaluate import evaluate_versions
    from scoring.run.promotion import evaluation_window

    cfg = load(config)
    store = ModelStore(cfg.model.store)
    champion = store.resolve(name, cfg.model.alias) if cfg.model.alias in store.aliases(name) else None
    versions = [store.get(name, version)] if version is not None else []
    versions += [champion] if champion is not None and champion.version != version else []
    if not versions:
        raise ScoringError(f"model {name!r} has no {cfg.model.alias}; give --version")
    window = evaluation_window(cfg, _day(start), _day(end))
    result = evaluate_versions(cfg, versions, *window)
    for mv in versions:
        store.add_evaluation(name, result.record(mv.version))
    table = Table(title=f"{name} on {window[0]}..{window[1]}: {result.rows} labelled rows ({result.label_column})")
    table.add_column("metric")
    for mv in versions:
        tag = f" ({cfg.model.alias})" if champion is not None and mv.version == champion.version else ""
        table.add_column(f"v{mv.version}{tag}", justify="right")
    for metric in dict.fromkeys(k for m in result.metrics.values() for k in m):
        table.add_row(metric, *(_fmt(result.metrics[mv.version].get(metric)) for mv in versions))
    console.print(table)


def _fmt(value: Any) -> str:
    return "" if value is None else str(value) if isinstance(value, int) else f"{value:.4f}"


@models_app.command("check")
@handle_errors
def models_check(name: str, version: int, start: StartOpt = None, end: EndOpt = None,
                 config: ConfigOpt = None) -> None:
    """Run the promotion gate without promoting: one line per check; exit 1 if any fails (for CI)."""
    from scoring.run.promotion import gate_checks

    checks = gate_checks(load(config), name, version, start=_day(start), end=_day(end))
    for c in checks:
        (console if c.passed else err).print(f"{'passed' if c.passed else '[bold red]FAILED[/]'} {c.name}: "
                                             f"{c.detail}", highlight=False, soft_wrap=True)
    if not all(c.passed for c in checks):
        raise typer.Exit(1)


def promote_with_gate(config: Any, name: str, version: int, alias: str, force: bool, reason: str | None,
                      start: str | None, end: str | None) -> None:
    """Promote after the gate (only for the configured champion alias; ``scoring.run.promotion.promote``);
    refusal: one line per failed check and exit 1. --force (needs --reason) promotes anyway; who and why go
    into the alias history."""
    from scoring.run.promotion import PromotionRefused, promote

    cfg = load(config)
    try:
        promote(cfg, name, version, alias, force=force, reason=reason, start=_day(start), end=_day(end),
                by=getpass.getuser())
    except PromotionRefused as refused:
        for c in refused.checks:
            if not c.passed:
                err.print(f"[bold red]refused:[/] {c.name}: {c.detail}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"{alias} of {name} -> version {version}" + (" (forced)" if force else ""))


@models_app.command("compare")
@handle_errors
def models_compare(start: Annotated[str, typer.Option(help="first day")],
                   end: Annotated[str, typer.Option(help="last day, inclusive")],
                   model: Annotated[str | None, typer.Option(help="default: the configured model")] = None,
                   as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOpt = None) -> None:
    """Shadow scoring over time: per day and challenger, the rows it quarantined (its own gate results) beside
    the champion's, rank correlation with the champion, top-decile overlap, mean and positive-rate
    difference, PSI between the two score distributions."""
    from scoring.storage.results import open_results

    cfg = load(config)
    results = open_results(cfg.results)
    rows = results.query(f"SELECT * FROM {results.table_name('shadow_summary')} "  # noqa: S608 - quoted
                         "WHERE model_name = $1 AND day BETWEEN $2 AND $3 ORDER BY day, model_version",
                         [model or cfg.model.name, _day(start), _day(end)]).to_pylist()
    from scoring.run.promotion import shadow_days

    gate: dict[int, Any] = {}
    for row in rows:  # the challenger's own gate results, from the ledger (runs' details.shadow)
        version = int(row["model_version"])
        if version not in gate:
            gate[version] = shadow_days(cfg, model or cfg.model.name, version)
        entry, run = gate[version].get(row["day"], ({}, {}))
        row.update(rows_in=entry.get("rows_in"), quarantined=entry.get("quarantined"), rules=entry.get("rules"),
                   champion_quarantined=run.get("rows_rejected"))
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        raise ScoringError(f"no shadow scoring of {model or cfg.model.name} between {start} and {end}: list "
                           "challengers under model.challengers")
    # Short headers so the table fits 80 columns with the day whole (the --json keys are the full names).
    table = Table(title=f"shadow scoring of {model or cfg.model.name}", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    columns = {"day": "day", "model_version": "ver", "champion_version": "champ", "rows": "rows", "quarantined": "quar.",
               "champion_quarantined": "champ quar.",
               "rank_correlation": "rank corr", "top_decile_overlap": "top 10%", "mean_diff": "mean diff",
               "positive_rate_diff": "pos. rate diff", "psi": "psi"}
    for col, header in columns.items():
        table.add_column(header, justify="left" if col == "day" else "right", no_wrap=col == "day",
                         min_width=10 if col == "day" else None)
    for row in rows:
        table.add_row(*(str(row[c]) if c == "day" else _fmt(row[c]) for c in columns))
    console.print(table)
    for row in rows:
        if row.get("rules"):
            console.print(f"{row['day']} v{row['model_version']} quarantined by: "
                          + ", ".join(f"{k} ({n})" for k, n in row["rules"].items()), highlight=False, soft_wrap=True)
