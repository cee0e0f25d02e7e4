"""`scoring run` and `scoring backfill`: score one day, or each day of a range, with the local driver."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from scoring.cli.app import ConfigOpt, app, console, day_or_yesterday, err, handle_errors, load, progress_bar


class _PrintedResult(logging.Filter):
    """Hides the engine's one-line result log (``run.pipeline.RESULT_LOG``) from this command's terminal: the
    command prints the result as a table, once. Logs elsewhere (Airflow, files) keep the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from scoring.run.pipeline import RESULT_LOG

        return not getattr(record, RESULT_LOG, False)


@contextlib.contextmanager
def _result_printed_once() -> Iterator[None]:
    handlers, hide = logging.getLogger().handlers, _PrintedResult()
    for h in handlers:
        h.addFilter(hide)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(hide)


def _print_result(result: Any, cfg: Any, sample: int) -> None:
    from scoring.storage.results import open_results

    table = Table(title=f"{result.model_name} v{result.model_version} — {result.day}", show_header=False)
    for label, value in [("run id", result.run_id), ("rows in", result.rows_in),
                         ("quarantined", result.rows_rejected), ("scored", result.rows_scored),
                         ("model version", result.model_version), ("seconds", f"{result.duration_s:.2f}"),
                         ("results", result.results)]:
        table.add_row(label, str(value))
    console.print(table)
    if result.rows_rejected:
        _print_quarantine(open_results(cfg.results), result.run_id)
    if sample and result.rows_scored:
        preds = open_results(cfg.results).predictions(result.day, result.model_name).slice(0, sample)
        _print_arrow(preds.select(["source_key", "score", "label", "model_version", "day"]),
                     f"first {sample} predictions")


def _print_quarantine(results: Any, run_id: str, limit: int = 8) -> None:
    """Why rows were set aside: per column and rule, the row count and example values (one line each)."""
    rows = results.query(
        f"SELECT column_name, rule, count(*) AS n, min(value) AS low, max(value) AS high "  # noqa: S608 - quoted
        f"FROM {results.table_name('quarantine')} WHERE run_id = $1 GROUP BY column_name, rule "
        "ORDER BY n DESC, column_name LIMIT " + str(int(limit)), [run_id]).to_pylist()
    console.print("quarantined (not scored), by column and rule:", highlight=False)
    for r in rows:
        values = r["low"] if r["low"] == r["high"] else f"{r['low']}, {r['high']}"
        console.print(f"  {r['column_name'] or '-'}: {r['n']:,} row(s), e.g. {values} ({r['rule']})",
                      highlight=False, markup=False)
    console.print("  (each row with its value, rule and reason: the quarantine table of the results)",
                  highlight=False, markup=False)


class ModelAsOf(StrEnum):
    now = "now"
    day = "day"


def _print_late(late: list[Any]) -> int:
    """Print the late-data re-scores; return how many failed."""
    if not late:
        return 0
    table = Table(title="late data: days re-scored")
    for col in ("day", "rows before", "rows now", "status", "scored / error"):
        table.add_column(col)
    for item in late:
        r = item.result
        table.add_row(str(item.day), str(item.rows_before), str(item.rows_now),
                      "[green]success" if r else "[red]failed",
                      f"{r.rows_scored} scored, {r.rows_rejected} quarantined" if r else item.error or "")
    console.print(table)
    return sum(1 for item in late if item.error)


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
        date: Annotated[str | None, typer.Option("--date", "-d", help="business day to score, YYYY-MM-DD "
                                                 "(default: yesterday in schedule.timezone)")] = None,
        version: Annotated[int | None, typer.Option(help="model version overriding alias/pin")] = None,
        rows_per_chunk: Annotated[int | None, typer.Option(help="override the chunk size")] = None,
        show: Annotated[int, typer.Option(help="predictions to print")] = 5) -> None:
    """Score one business day and replace its partition; then re-score late data (schedule.recheck_days)."""
    from scoring.dates import parse_day
    from scoring.errors import ConfigError
    from scoring.run.late import rescore_late_days
    from scoring.run.pipeline import run_day

    if rows_per_chunk is not None and rows_per_chunk < 1:
        raise ConfigError(f"--rows-per-chunk {rows_per_chunk}: give 1 or more rows per chunk (or leave it out)")
    day = parse_day(date) if date else None
    cfg = load(config)
    day = day or day_or_yesterday(None, cfg.timezone)
    if date:
        _warn_outside_source(cfg, day, day)
    with _result_printed_once(), progress_bar() as progress:
        task = progress.add_task(f"scoring {day}", total=None)
        result = run_day(cfg, day, version=version, rows_per_chunk=rows_per_chunk,
                         on_start=lambda n: progress.update(task, total=n),
                         on_chunk=lambda m: progress.advance(task, m.rows_in))
    if result.status == "superseded":
        err.print(f"[yellow]superseded:[/] {result.note}", highlight=False, soft_wrap=True)
        return
    _print_result(result, cfg, show)
    _exit_if_export_failed(cfg, result.run_id)
    with _result_printed_once():
        late = rescore_late_days(cfg, day)
    failed = _print_late(late)
    if failed:
        err.print(f"[bold red]{failed} late-data re-score(s) failed[/]")
        raise typer.Exit(1)


def _warn_outside_source(cfg: Any, first: Any, last: Any) -> None:
    """One warning line when the named days reach outside the source's first .. last day."""
    from scoring.storage.sources.day_range import outside_source

    line = outside_source(cfg, first, last)
    if line:
        err.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


EXPORT_FAILED = 4  # `scoring run`: published, but the reader export failed (docs/security.md)


def _exit_if_export_failed(cfg: Any, run_id: str) -> None:
    """Exit EXPORT_FAILED with one line when the run published but its reader export could not be written."""
    from scoring.storage.results import open_results

    store = open_results(cfg.results)
    failure = store.export_failure(run_id) if hasattr(store, "export_failure") else None
    if failure:
        err.print(f"[bold red]{failure}[/]; the next publish, `scoring runs` or `scoring export --repair` "
                  "re-exports it", highlight=False, soft_wrap=True)
        raise typer.Exit(EXPORT_FAILED)


@app.command()
@handle_errors
def backfill(start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
             end: Annotated[str, typer.Option(help="last day, inclusive")],
             config: ConfigOpt = None,
             fail_fast: Annotated[bool, typer.Option(help="stop at the first failed day")] = False,
             version: Annotated[int | None, typer.Option(help="model version overriding alias/pin")] = None,
             model_as_of: Annotated[ModelAsOf, typer.Option(
                 "--model-as-of", help="now: the alias's target today; day: its target on each day "
                 "(from the alias history)")] = ModelAsOf.now,
             parallel: Annotated[int, typer.Option(
                 help="days scored at a time, each in its own process; published one at a time, in "
                 "order (each day's chunks are then scored one after the other)")] = 1,
             yes: Annotated[bool, typer.Option("--yes", help="allow a range longer than "
                                               "schedule.max_backfill_days")] = False) -> None:
    """Score each business day of a range (inclusive); exit code = number of failed days."""
    from scoring.dates import day_range, parse_day
    from scoring.errors import ConfigError
    from scoring.run.backfill import backfill as run_backfill

    if parallel < 1:
        raise ConfigError(f"--parallel {parallel}: give the number of days to score at a time, 1 or more")
    first, last = parse_day(start), parse_day(end)
    cfg = load(config)
    span = (last - first).days + 1
    if span > cfg.schedule.max_backfill_days and not yes:
        raise ConfigError(f"backfill {first} .. {last} is {span} days, more than schedule.max_backfill_days "
                          f"({cfg.schedule.max_backfill_days}); check the dates, or pass --yes")
    _warn_outside_source(cfg, first, last)
    days = day_range(first, last)
    summary = Table(title=f"backfill {first} .. {last}")
    for col in ("day", "status", "rows in", "quarantined", "scored", "seconds / error"):
        summary.add_column(col)
    with _result_printed_once(), progress_bar() as progress:
        task = progress.add_task("backfill", total=len(days))

        def on_day(o: Any) -> None:
            progress.advance(task)
            if o.result:
                r = o.result
                summary.add_row(str(o.day), f"[{'green' if r.status == 'success' else 'yellow'}]{r.status}",
                                str(r.rows_in), str(r.rows_rejected),
                                str(r.rows_scored), f"{r.duration_s:.2f}")
            else:
                summary.add_row(str(o.day), "[red]failed", "", "", "", o.error or "")

        outcomes = run_backfill(cfg, first, last, fail_fast=fail_fast, on_day=on_day, version=version,
                                model_as_of=model_as_of.value, parallel=parallel)
    console.print(summary)
    failed = sum(1 for o in outcomes if o.error)
    if failed:
        err.print(f"[bold red]{failed} of {len(days)} days failed[/]")
    raise typer.Exit(min(failed, 125))
