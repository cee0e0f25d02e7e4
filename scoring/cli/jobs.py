"""`scoring jobs`: on-demand scoring jobs (submit, status, list, cancel, work).

Exit codes scripts can use: 0 succeeded (or, without ``--wait``, still queued/running), 1 failed or a
refused command or interrupted (its worker process died), 2 cancelled. ``jobs work`` exits 1 when a job it processed failed.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from scoring.cli.app import ConfigOpt, app, console, err, handle_errors, load

jobs_app = typer.Typer(help="On-demand jobs: score a file or a query's rows with a registered model.",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
EXIT = {"succeeded": 0, "failed": 1, "cancelled": 2, "interrupted": 1}
SHOWN = ("job_id", "state", "engine", "model_name", "model_version", "rows_in", "rows_scored", "rows_quarantined",
         "chunks_done", "chunks_total", "output", "error", "submitted_at", "started_at", "finished_at",
         "airflow_run_id", "airflow_state", "details")


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in SHOWN if k in row}
    out["input"] = (row.get("spec") or {}).get("input") or (row.get("spec") or {}).get("query")
    out["to_table"] = (row.get("spec") or {}).get("to_table")
    return json.loads(json.dumps(out, default=str))


def _line(row: dict[str, Any]) -> str:
    chunks = f"{row.get('chunks_done') or 0}/{row['chunks_total']}" if row.get("chunks_total") is not None else "-"
    version = f" v{row['model_version']}" if row.get("model_version") else ""
    text = (f"{row['job_id']}  {row['state']}  {row['model_name']}{version}  in {row.get('rows_in') or 0}, "
            f"scored {row.get('rows_scored') or 0}, quarantined {row.get('rows_quarantined') or 0}, chunks {chunks}")
    if row.get("output"):
        text += f"  output {row['output']}"
    if row.get("error"):
        text += f"\n  error: {row['error']}"
    replaced = (row.get("details") or {}).get("replaced")
    if replaced:
        text += (f"\n  replaced: {replaced['removed']} of the {replaced['predictions_before']} predictions "
                 f"{replaced['output']} held are gone ({replaced['removed_quarantined']} quarantined by this job, "
                 f"{replaced['removed_from_source']} not in its input)")
    return text


def _show(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(_plain(row)))
    else:
        console.print(_line(row), highlight=False, soft_wrap=True)


@jobs_app.command("submit")
@handle_errors
def submit(config: ConfigOpt = None,
           input_: Annotated[str | None, typer.Option("--input", help="Parquet or CSV file (path or file:// URI)")] = None,
           query: Annotated[str | None, typer.Option(help="one SELECT run read-only against the configured source")] = None,
           param: Annotated[list[str] | None, typer.Option(help="NAME=VALUE bound to $NAME in --query "
                                                            "(repeatable)")] = None,
           model: Annotated[str | None, typer.Option(help="model name (default: the configured model)")] = None,
           alias: Annotated[str | None, typer.Option(help="score with this alias's version")] = None,
           version: Annotated[int | None, typer.Option(help="score with this version")] = None,
           key: Annotated[str | None, typer.Option(help="key column of the input (default source.key_column)")] = None,
           output: Annotated[str | None, typer.Option(help="also write the predictions here (.parquet or .csv)")] = None,
           table: Annotated[bool, typer.Option("--table/--no-table", help="publish into job_predictions")] = True,
           overwrite: Annotated[bool, typer.Option(help="--output may replace an existing file")] = False,
           wait: Annotated[bool, typer.Option(help="wait until the job ends (embedded: process it here)")] = False,
           as_json: JsonOpt = False) -> None:
    """Queue a scoring job and print its id (with --wait: its outcome; exit 1 if it failed)."""
    from scoring.config import config_path
    from scoring.run.jobs import JobSpec
    from scoring.run.jobs import submit as submit_job

    cfg = load(config)
    params = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--param {item!r}: expected NAME=VALUE")
        params[name] = value
    spec = JobSpec(model or cfg.model.name, input_, query, params, alias, version, key, output, table,
                   str(config_path(config).resolve()), overwrite)
    row = submit_job(cfg, spec, wait=wait)
    if wait and row["state"] not in EXIT:
        row = _wait(cfg, row["job_id"])
    if wait:
        _show(row, as_json)
        raise typer.Exit(EXIT.get(row["state"], 0))
    if as_json:
        console.print_json(json.dumps(_plain(row)))
    else:
        console.print(row["job_id"], highlight=False)


def _wait(cfg: Any, job_id: str, poll_s: float = 2.0, timeout_s: float | None = None) -> dict[str, Any]:
    from scoring.run.jobs import job_status

    started = time.monotonic()
    while True:
        row = job_status(cfg, job_id)
        if row["state"] in EXIT or (timeout_s is not None and time.monotonic() - started > timeout_s):
            return row
        time.sleep(poll_s)


@jobs_app.command("status")
@handle_errors
def status(job_id: str, config: ConfigOpt = None,
           wait: Annotated[bool, typer.Option(help="return when the job ends")] = False,
           timeout: Annotated[float | None, typer.Option(help="with --wait: give up after this many seconds "
                                                         "(exit 3)")] = None,
           as_json: JsonOpt = False) -> None:
    """A job's state, counts, chunks done of total, output and error (exit 0/1/2: succeeded/failed/cancelled)."""
    from scoring.run.jobs import job_status

    cfg = load(config)
    row = _wait(cfg, job_id, timeout_s=timeout) if wait else job_status(cfg, job_id)
    _show(row, as_json)
    if wait and row["state"] not in EXIT:
        raise typer.Exit(3)
    raise typer.Exit(EXIT.get(row["state"], 0))


@jobs_app.command("list")
@handle_errors
def list_jobs(config: ConfigOpt = None,
              state: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, "
                                                        "cancelled or interrupted")] = None,
              limit: Annotated[int, typer.Option(help="rows")] = 20, as_json: JsonOpt = False) -> None:
    """Jobs, newest first."""
    from scoring.run.jobs import ledger_for
    from scoring.storage.results.jobs_ledger import STATES

    if state is not None and state not in STATES:
        raise typer.BadParameter(f"--state {state!r}: one of {', '.join(STATES)}")
    rows = ledger_for(load(config)).list(state, limit)
    if as_json:
        console.print_json(json.dumps([_plain(r) for r in rows]))
        return
    # Fits 80 columns: the id never wraps or shortens (it is copied into `jobs status`); the model name
    # is the one column that folds when space runs out.
    out = Table(box=box.SIMPLE_HEAD, show_edge=False, title="jobs", title_justify="left", padding=(0, 1, 0, 0))
    for name in ("job", "state", "model", "in", "scored", "quar.", "chunks"):
        out.add_column(name, no_wrap=name != "model", overflow="fold",
                       min_width=len("job-20260101T000000-abcdef") if name == "job" else None,
                       justify="right" if name in ("in", "scored", "quar.") else "left")
    for r in rows:
        out.add_row(r["job_id"], r["state"], f"{r['model_name']} v{r['model_version'] or '?'}",
                    f"{r['rows_in'] or 0:,}", f"{r['rows_scored'] or 0:,}", f"{r['rows_quarantined'] or 0:,}",
                    f"{r['chunks_done'] or 0}/{r['chunks_total'] if r['chunks_total'] is not None else '-'}")
    console.print(out)
    for r in rows:
        if r["error"]:
            console.print(f"{r['job_id']}: {r['error']}", highlight=False, soft_wrap=True)


@jobs_app.command("cancel")
@handle_errors
def cancel(job_id: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel a job (a running embedded job stops at its next chunk, publishing nothing)."""
    from scoring.run.jobs import cancel as cancel_job
    from scoring.run.jobs import job_status

    cfg = load(config)
    cancel_job(cfg, job_id)
    _show(job_status(cfg, job_id), as_json)


@jobs_app.command("work")
@handle_errors
def work(config: ConfigOpt = None,
         max_jobs: Annotated[int | None, typer.Option(help="stop after this many jobs")] = None,
         follow: Annotated[bool, typer.Option(help="keep polling for new jobs instead of stopping when the "
                                              "queue is empty")] = False,
         poll: Annotated[float, typer.Option(help="seconds between polls with --follow")] = 5.0,
         as_json: JsonOpt = False) -> None:
    """Process queued jobs one at a time, in this process (embedded engine; exit 1 if one failed)."""
    from scoring.run.job_runs import work as work_jobs

    def done(result: Any) -> None:
        if not as_json:
            line = f"{result.job_id} {result.state}: {result.rows_in} in, {result.rows_scored} scored, " \
                   f"{result.rows_quarantined} quarantined"
            (console if result.state == "succeeded" else err).print(
                line + (f"\n  error: {result.error}" if result.error else ""), highlight=False, soft_wrap=True)

    results = work_jobs(load(config), max_jobs=max_jobs, follow=follow, poll_s=poll, on_job=done)
    if as_json:
        from dataclasses import asdict

        console.print_json(json.dumps([asdict(r) for r in results]))
    elif not results:
        console.print("no queued jobs")
    raise typer.Exit(1 if any(r.state == "failed" for r in results) else 0)
