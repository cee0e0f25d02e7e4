"""`scoring runs`: the run ledger, newest first."""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from scoring.cli.app import ConfigOpt, app, console, err, handle_errors, load

COLOURS = {"success": "green", "failed": "red", "interrupted": "magenta", "superseded": "yellow"}


def ledger_table(rows: list[dict[str, Any]], title: str, width: int = 80) -> tuple[Table, list[str]]:
    """The ledger as a table that fits ``width`` columns (one line per run), and one line per failed run's error.

    Every column keeps its values whole except ``model``, which is cut with an ellipsis when the terminal is
    narrow. Errors are listed under the table rather than in a column: an error is a sentence, and a column
    narrow enough for 80 columns would fold every row over several lines.

    Args:
        rows: ledger rows (``ResultsStore.runs().to_pylist()``), newest first.
        title: the table title.
        width: the terminal width in characters.
    """
    cells, errors = [], []
    for r in rows:
        model = f"{r['model_name']} v{r['model_version']}"
        cells.append([str(r["day"]), model, r["status"],
                      *(f"{r[c]:,}" if r[c] is not None else "" for c in ("rows_in", "rows_rejected", "rows_scored")),
                      f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "", str(r["started_at"])[5:16]])
        if r["error"]:
            staged = f", staged {r['rows_staged']:,} rows" if r.get("rows_staged") and not r["rows_scored"] else ""
            errors.append(f"{r['day']} {model} ({r['status']}, run {r['run_id']}{staged}): {r['error']}")
    out = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=0, title_justify="left")
    headers = ("day", "model", "status", "rows in", "quar.", "scored", "secs", "started")
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(headers)]
    # The model column gets what the others leave (one space between columns), at least 8 characters.
    widths[1] = min(widths[1], max(8, width - sum(widths) + widths[1] - (len(headers) - 1)))
    for i, name in enumerate(headers):
        out.add_column(name, justify="right" if 3 <= i <= 6 else "left", no_wrap=True, overflow="ellipsis",
                       min_width=widths[i], max_width=widths[i])
    for row in cells:
        row[2] = f"[{COLOURS.get(row[2], 'yellow')}]{row[2]}"
        out.add_row(*row)
    return out, errors


@app.command()
@handle_errors
def runs(config: ConfigOpt = None, limit: Annotated[int, typer.Option(help="rows")] = 20,
         as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """The run ledger, newest first (errors of failed runs listed below the table), then the daily ledger rows
    of the HTTP services and stream consumers (`scoring serve`, `scoring stream`)."""

    if limit < 1:
        from scoring.errors import ConfigError

        raise ConfigError(f"--limit {limit}: give the number of runs to show, 1 or more")
    from scoring.errors import ScoringError

    cfg = load(config)
    online = _online_daily(cfg, limit)
    try:
        batch = _batch_runs(cfg, limit)
    except ScoringError:
        if not online:  # no batch results and no online ledger either: the one line says what to do
            raise
        batch = []  # a service or consumer without batch runs yet
    if as_json:
        console.print_json(json.dumps(batch + online, default=str))
        return
    if batch or not online:
        table, errors = ledger_table(batch, f"runs ({cfg.results.kind}; started = MM-DD HH:MM)", console.width)
        console.print(table)
        for line in errors:
            console.print(f"[red]error[/] {line}", highlight=False, soft_wrap=False)
    if online:
        console.print(online_table(online, console.width))


def _batch_runs(cfg: Any, limit: int) -> list[dict[str, Any]]:
    from scoring.storage.results import open_results

    store = open_results(cfg.results)
    try:  # attempts whose process is gone are shown as what they are
        store.mark_interrupted(by="scoring runs")
    except Exception as exc:  # noqa: BLE001 - listing the ledger must work even when it cannot be written
        logging.getLogger(__name__).debug("could not mark interrupted runs: %s", exc)
    _repair_export(store)
    return store.runs(limit=limit).to_pylist()


def _online_daily(cfg: Any, limit: int) -> list[dict[str, Any]]:
    """The newest daily ledger rows of the HTTP services and stream consumers (``online_daily`` next to the
    results); none when no service or consumer ever wrote there (never created by a listing)."""
    from pathlib import Path

    from scoring.online.sinks import Sink, default_target

    target = default_target(cfg)
    try:
        if target.startswith(("postgresql://", "postgres://")):
            import psycopg

            with psycopg.connect(target, connect_timeout=10) as con:
                if con.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = 'scoring_online' "
                               "AND table_name = 'online_daily'").fetchone() is None:
                    return []
        elif not Path(target).is_file():
            return []
        return [{"ledger": "online_daily", **r} for r in Sink(target).read_daily(limit)]
    except Exception as exc:  # noqa: BLE001 - the batch ledger is listed even when the online tables cannot be
        logging.getLogger(__name__).debug("online daily ledger not read: %s", exc)
        return []


def online_table(rows: list[dict[str, Any]], width: int = 80) -> Table:
    """The online daily ledger as a table within ``width`` columns: per day, service or consumer and model
    version, the rows received, scored, rejected by a rule and invalid."""
    out = Table(title="online, per day (serve: HTTP service, stream: consumer)", box=box.SIMPLE_HEAD,
                show_edge=False, padding=0, title_justify="left")
    headers = ("day", "kind", "service", "model", "received", "scored", "rejected", "invalid")
    cells = [[str(r["day"]), r["kind"], r["service"], f"{r['model_name']} v{r['model_version']}",
              *(f"{r[c]:,}" for c in ("received", "scored", "rejected", "invalid"))] for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    for i in (2, 3):  # service and model get what the others leave, at least 8 characters each
        widths[i] = min(widths[i], max(8, (width - sum(widths[:2]) - sum(widths[4:]) - len(headers) + 1) // 2))
    for i, name in enumerate(headers):
        out.add_column(name, justify="right" if i >= 4 else "left", no_wrap=True, overflow="ellipsis",
                       min_width=widths[i], max_width=widths[i])
    for row in cells:
        out.add_row(*row)
    return out


@app.command()
@handle_errors
def cleanup(config: ConfigOpt = None,
            older_than: Annotated[str, typer.Option(help="age of the newest file: 30m, 12h, 7d")] = "1d") -> None:
    """Remove staging folders no live run holds and nothing touched for --older-than (default 1d)."""
    from scoring.errors import ConfigError
    from scoring.storage.stagefs import staging_root
    from scoring.storage.staging import cleanup as remove_old

    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", older_than.strip())
    if not found:
        raise ConfigError(f"--older-than {older_than!r}: expected a number and a unit s, m, h or d (e.g. 12h)")
    seconds = float(found.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
    cfg = load(config)
    removed = remove_old(staging_root(cfg.results), seconds)
    removed += _job_leftovers(cfg, seconds)
    console.print(f"removed {len(removed)} staging folder(s) under {cfg.results.staging_dir}")
    for path in removed:
        console.print(f"  {path}", highlight=False)


def _job_leftovers(cfg: Any, seconds: float) -> list[Any]:
    """Staged chunks of jobs that ended or whose process is gone, and half-written job outputs."""
    from pathlib import Path

    from scoring.run.jobs import ledger_for
    from scoring.storage.output_rules import remove_finished_job_stages, remove_stale_tmp

    removed: list[Any] = list(remove_stale_tmp(cfg.jobs.output_dir, seconds)) if cfg.jobs.output_dir else []
    if not isinstance(cfg.results.staging_dir, Path):
        return removed
    ledger = ledger_for(cfg)
    ledger.mark_interrupted(cfg.results.heartbeat_timeout_s, by="scoring cleanup")
    return removed + remove_finished_job_stages(cfg.results.staging_dir / "jobs",
                                                lambda job_id: (ledger.get(job_id) or {}).get("state"), seconds)


def _repair_export(store: Any) -> None:
    """Re-export partitions whose reader export diverged from the ledger (DuckDB results); never fails the
    listing: a repair that cannot run now says so on one line."""
    if not hasattr(store, "repair_export"):
        return
    try:
        found = store.repair_export(wait_s=2.0)  # a publish holding the results: repaired after it, by it
    except Exception as exc:  # noqa: BLE001 - the listing must work while the results are locked or the disk full
        err.print(f"reader export not repaired: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
                  highlight=False, soft_wrap=True)
        return
    if found:
        err.print(f"reader export repaired: {len(found)} partition(s) re-exported", highlight=False)


@app.command("export")
@handle_errors
def export(config: ConfigOpt = None,
           repair: Annotated[bool, typer.Option(help="re-export the partitions that differ")] = False) -> None:
    """Compare the reader export with the results (which run each partition holds); exit 1 if they differ
    and --repair was not given."""
    from scoring.errors import ConfigError
    from scoring.storage.results import open_results

    cfg = load(config)
    store = open_results(cfg.results)
    if not hasattr(store, "repair_export") or not cfg.results.reader_export:
        raise ConfigError("the reader export exists for DuckDB results with results.reader_export: true only")
    found = store.repair_export(dry_run=not repair)
    for day, model in found:
        console.print(f"{'re-exported' if repair else 'differs'}: {model} {day}", highlight=False)
    if not found:
        console.print(f"reader export {store.export_dir} holds the published runs")
    elif not repair:
        console.print("run `scoring export --repair` to re-export them")
        raise typer.Exit(1)
