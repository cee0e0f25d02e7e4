"""The `scoring` command line: everything the DAG does, without a scheduler."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scoring.errors import ScoringError

app = typer.Typer(help="Scheduled batch scoring: extract a day, validate, score in chunks, publish atomically.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="The model store: list, show, register, promote.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()
err = Console(stderr=True)
logger = logging.getLogger("scoring.cli")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default $SCORING_CONFIG "
                                                "or ./scoring.yaml)")]


def _cfg(path: Path | None) -> Any:
    from scoring.config import load_config

    return load_config(path)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn domain errors into one red line and exit code 1, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ScoringError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)])
    for name in ("scoring", "features"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def _day(text: str | None) -> dt.date:
    from scoring.dates import parse_day, yesterday

    return parse_day(text) if text else yesterday()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def _print_result(result: Any, cfg: Any, sample: int) -> None:
    from scoring.results import open_results

    table = Table(title=f"{result.model_name} v{result.model_version} — {result.day}", show_header=False)
    for label, value in [("run id", result.run_id), ("rows in", result.rows_in),
                         ("quarantined", result.rows_rejected), ("scored", result.rows_scored),
                         ("model version", result.model_version), ("seconds", f"{result.duration_s:.2f}"),
                         ("results", result.results)]:
        table.add_row(label, str(value))
    console.print(table)
    if sample and result.rows_scored:
        preds = open_results(cfg.results).predictions(result.day, result.model_name).slice(0, sample)
        _print_arrow(preds.select(["source_key", "score", "label", "model_version", "day"]),
                     f"first {sample} predictions")


def _print_arrow(tbl: Any, title: str) -> None:
    out = Table(title=title)
    for name in tbl.column_names:
        out.add_column(name)
    for row in tbl.to_pylist():
        out.add_row(*[f"{v:.6f}" if isinstance(v, float) else str(v) for v in row.values()])
    console.print(out)


@app.command()
@handle_errors
def run(config: ConfigOpt = None,
        date: Annotated[str | None, typer.Option("--date", "-d", help="day to score, YYYY-MM-DD "
                                                 "(default: yesterday, UTC)")] = None,
        version: Annotated[int | None, typer.Option(help="model version overriding alias/pin")] = None,
        rows_per_chunk: Annotated[int | None, typer.Option(help="override the chunk size")] = None,
        show: Annotated[int, typer.Option(help="predictions to print")] = 5) -> None:
    """Score one day and replace its partition of the predictions table."""
    from scoring.pipeline import run_day

    day = _day(date)
    cfg = _cfg(config)
    with _progress() as progress:
        task = progress.add_task(f"scoring {day}", total=None)
        result = run_day(cfg, day, version=version, rows_per_chunk=rows_per_chunk,
                         on_start=lambda n: progress.update(task, total=n),
                         on_chunk=lambda m: progress.advance(task, m.rows_in))
    _print_result(result, cfg, show)


@app.command()
@handle_errors
def backfill(start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
             end: Annotated[str, typer.Option(help="last day, inclusive")],
             config: ConfigOpt = None,
             fail_fast: Annotated[bool, typer.Option(help="stop at the first failed day")] = False,
             version: Annotated[int | None, typer.Option(help="model version overriding alias/pin")] = None) -> None:
    """Score each day of a range (inclusive), sequentially; exit code = number of failed days."""
    from scoring.backfill import backfill as run_backfill
    from scoring.dates import day_range, parse_day

    first, last = parse_day(start), parse_day(end)
    days = day_range(first, last)
    cfg = _cfg(config)
    summary = Table(title=f"backfill {first} .. {last}")
    for col in ("day", "status", "rows in", "quarantined", "scored", "seconds / error"):
        summary.add_column(col)
    with _progress() as progress:
        task = progress.add_task("backfill", total=len(days))

        def on_day(o: Any) -> None:
            progress.advance(task)
            if o.result:
                r = o.result
                summary.add_row(str(o.day), "[green]success", str(r.rows_in), str(r.rows_rejected),
                                str(r.rows_scored), f"{r.duration_s:.2f}")
            else:
                summary.add_row(str(o.day), "[red]failed", "", "", "", o.error or "")

        outcomes = run_backfill(cfg, first, last, fail_fast=fail_fast, on_day=on_day, version=version)
    console.print(summary)
    failed = sum(1 for o in outcomes if o.error)
    if failed:
        err.print(f"[bold red]{failed} of {len(days)} days failed[/]")
    raise typer.Exit(min(failed, 125))


@app.command()
@handle_errors
def runs(config: ConfigOpt = None, limit: Annotated[int, typer.Option(help="rows")] = 20,
         as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """The run ledger, newest first."""
    from scoring.results import open_results

    cfg = _cfg(config)
    tbl = open_results(cfg.results).runs(limit=limit)
    if as_json:
        console.print_json(json.dumps(tbl.to_pylist(), default=str))
        return
    out = Table(title=f"runs ({cfg.results.kind})")
    for col in ("day", "model", "status", "in", "quarantined", "scored", "seconds", "started", "error"):
        out.add_column(col, overflow="fold")
    for r in tbl.to_pylist():
        colour = {"success": "green", "failed": "red"}.get(r["status"], "yellow")
        out.add_row(str(r["day"]), f"{r['model_name']} v{r['model_version']}", f"[{colour}]{r['status']}",
                    str(r["rows_in"]), str(r["rows_rejected"]), str(r["rows_scored"]),
                    f"{r['duration_s']:.2f}" if r["duration_s"] is not None else "",
                    str(r["started_at"])[:19], (r["error"] or "")[:80])
    console.print(out)


@app.command()
@handle_errors
def train(config: ConfigOpt = None,
          start: Annotated[str | None, typer.Option(help="first training day (default: config)")] = None,
          end: Annotated[str | None, typer.Option(help="last training day, inclusive")] = None,
          alias: Annotated[list[str] | None, typer.Option(help="aliases to point at the new version")] = None
          ) -> None:
    """Fit the configured features Pipeline on labelled source rows and register it."""
    from scoring.dates import parse_day
    from scoring.training import train_model

    cfg = _cfg(config)
    with console.status("training"):
        mv = train_model(cfg, parse_day(start) if start else None, parse_day(end) if end else None,
                         aliases=alias if alias is not None else ["champion"])
    console.print(f"registered [bold]{mv.name}[/] version {mv.version}; metrics {mv.meta['metrics']}")


@app.command("sample-data")
@handle_errors
def sample_data(out: Annotated[Path, typer.Option(help="DuckDB file to write")] = Path("sample_data/sample.duckdb"),
                end: Annotated[str | None, typer.Option(help="last day (default: yesterday)")] = None,
                days: Annotated[int, typer.Option(help="number of days")] = 60,
                rows_per_day: Annotated[int, typer.Option(help="rows per day")] = 2000,
                seed: Annotated[int, typer.Option(help="random seed")] = 42) -> None:
    """Generate the deterministic sample source (loan applications)."""
    from sample_data.generate import generate

    last = _day(end)
    first = last - dt.timedelta(days=days - 1)
    total = generate(out, first, days, rows_per_day, seed=seed)
    console.print(f"wrote {total} rows ({first} .. {last}) to {out}")


@models_app.command("list")
@handle_errors
def models_list(config: ConfigOpt = None) -> None:
    """Every model and version in the store, with aliases."""
    from scoring.model_store import ModelStore

    cfg = _cfg(config)
    store = ModelStore(cfg.model.store)
    table = Table(title=f"models in {cfg.model.store}")
    for col in ("name", "version", "aliases", "created_at", "estimator", "metrics"):
        table.add_column(col)
    for name in store.names():
        aliases = store.aliases(name)
        for mv in store.versions(name):
            tags = ", ".join(a for a, v in aliases.items() if v == mv.version)
            table.add_row(name, str(mv.version), tags, mv.meta["created_at"][:19], mv.meta.get("estimator", ""),
                          json.dumps({k: round(v, 4) for k, v in (mv.meta.get("metrics") or {}).items()}))
    console.print(table)


@models_app.command("show")
@handle_errors
def models_show(name: str, version: Annotated[int | None, typer.Option(help="default: champion")] = None,
                config: ConfigOpt = None) -> None:
    """Metadata of one version (without the bulky reference statistics) and its alias history."""
    from scoring.model_store import ModelStore

    cfg = _cfg(config)
    store = ModelStore(cfg.model.store)
    mv = store.resolve(name, cfg.model.alias, version)
    meta = {k: v for k, v in mv.meta.items() if k != "reference"}
    meta["alias_history"] = store.history(name)
    console.print_json(json.dumps(meta, default=str))


@models_app.command("register")
@handle_errors
def models_register(
    name: Annotated[str, typer.Option(help="model name")],
    artifact: Annotated[Path, typer.Option(help="joblib file of a fitted estimator/Pipeline")],
    training_data: Annotated[Path | None, typer.Option(help="Parquet file of (a sample of) the training rows")] = None,
    start: Annotated[str | None, typer.Option(help="or: read training rows from the source from this day")] = None,
    end: Annotated[str | None, typer.Option(help="... to this day, inclusive")] = None,
    label: Annotated[str | None, typer.Option(help="label column in the training data (for metrics)")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="aliases to point at the new version")] = None,
    config: ConfigOpt = None,
) -> None:
    """Register a model trained elsewhere, with its feature schema and drift reference from training rows."""
    import pandas as pd

    from scoring.dates import parse_day
    from scoring.model_store import ModelStore
    from scoring.registry import register_model
    from scoring.training import read_window

    cfg = _cfg(config)
    window = None
    if training_data is not None:
        if not training_data.is_file():
            raise ScoringError(f"training data {str(training_data)!r} not found")
        frame = pd.read_parquet(training_data)
    elif start and end:
        window = (parse_day(start), parse_day(end))
        frame = read_window(cfg, *window)
    else:
        raise ScoringError("give --training-data FILE or --start/--end to read training rows from the source")
    mv = register_model(ModelStore(cfg.model.store), name, artifact, frame, label_column=label,
                        exclude={cfg.source.key_column, cfg.source.timestamp_column}, window=window,
                        aliases=alias or [])
    from scoring.validation.suite import write_generated_suite

    suite = write_generated_suite(cfg.validation.suites_dir, mv, cfg.source.key_column, cfg.validation.range_margin)
    console.print(f"registered [bold]{mv.name}[/] version {mv.version} "
                  f"({len(mv.features)} features, sha256 {mv.meta['sha256'][:12]}); expectation suite {suite}")


@models_app.command("promote")
@handle_errors
def models_promote(name: str, version: int, alias: Annotated[str, typer.Option()] = "champion",
                   config: ConfigOpt = None) -> None:
    """Point an alias (default champion) at a version; the change is kept in the alias history."""
    from scoring.model_store import ModelStore

    cfg = _cfg(config)
    ModelStore(cfg.model.store).set_alias(name, alias, version)
    console.print(f"{alias} of {name} -> version {version}")


REPORT_FORMATS = ("table", "csv", "json", "html")


@models_app.command("suite")
@handle_errors
def models_suite(name: str, version: Annotated[int | None, typer.Option(help="default: champion")] = None,
                 force: Annotated[bool, typer.Option(help="overwrite an existing (maybe edited) suite")] = False,
                 config: ConfigOpt = None) -> None:
    """Write the starting expectation suite of a version (from its training profile) to the suites folder."""
    from scoring.model_store import ModelStore
    from scoring.validation.compile import compile_suite
    from scoring.validation.suite import read_suite, suite_path, write_generated_suite

    cfg = _cfg(config)
    mv = ModelStore(cfg.model.store).resolve(name, cfg.model.alias, version)
    existed = suite_path(cfg.validation.suites_dir, mv.name, mv.version).exists()
    path = write_generated_suite(cfg.validation.suites_dir, mv, cfg.source.key_column, cfg.validation.range_margin,
                                 overwrite=force)
    rules = compile_suite(read_suite(path), path).rules
    state = "kept the existing" if existed and not force else "wrote the"
    console.print(f"{state} expectation suite {path} ({len(rules)} expectations)")


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
    from scoring.results import open_results

    if fmt not in REPORT_FORMATS:
        raise ScoringError(f"invalid --format {fmt!r}: use one of {', '.join(REPORT_FORMATS)}")
    unknown = [s for s in section or [] if s not in SECTIONS]
    if unknown:
        raise ScoringError(f"unknown --section {unknown[0]!r}: use one of {', '.join(SECTIONS)}")
    if fmt == "csv" and len(section or []) > 1:
        raise ScoringError("--format csv writes one section: give at most one --section")
    first, last = parse_day(start), parse_day(end)
    cfg = _cfg(config)
    if refresh:
        from scoring.reports import refresh_reports

        logger.info("report views refreshed: %s", refresh_reports(cfg))
    data = load_report(cfg, open_results(cfg.results), first, last, model, parse_day(day) if day else None)
    chosen = tuple(section) if section else None
    for warning in data.warnings:
        err.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if fmt == "table":
        from scoring.reports.outputs import rich_tables

        # Piped or redirected output gets whole lines; a terminal folds the text columns to fit.
        screen = console if console.is_terminal else Console(width=220)
        for note in data.notes:
            screen.print(f"[blue]note:[/] {note}", highlight=False, soft_wrap=True)
        for table in rich_tables(data, chosen):
            screen.print(table)
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
    from scoring.drift import drift_rows

    cfg = _cfg(config)
    first, last = parse_day(start), parse_day(end)
    if last < first:
        raise ScoringError(f"end date {last} comes before start date {first}")
    rows = drift_rows(cfg, first, last, feature=feature, flagged=only_flagged)
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    out = Table(title=f"drift {first} .. {last} ({cfg.model.name}; warn >= {cfg.validation.psi_warn}, "
                      f"alert >= {cfg.validation.psi_alert})")
    for col in ("day", "version", "feature", "psi", "status"):
        out.add_column(col, justify="right" if col == "psi" else "left")
    for r in rows:
        colour = {"ok": "green", "warn": "yellow", "alert": "red"}[r["status"]]
        out.add_row(str(r["day"]), str(r["model_version"]), r["feature"], f"{r['psi']:.4f}",
                    f"[{colour}]{r['status']}")
    console.print(out)
    if not rows:
        err.print(f"no drift rows for {cfg.model.name} between {first} and {last}")


if __name__ == "__main__":
    app()
