"""`scoring serve`, `scoring stream`, `scoring parity`: the model online, on a stream, and their parity check."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Annotated

import typer

from scoring.cli.app import ConfigOpt, app, handle_errors, load, print_json_line
from scoring.errors import ConfigError


@app.command("serve")
@handle_errors
def serve_cmd(config: ConfigOpt = None,
              host: Annotated[str, typer.Option(help="address to bind; anything but loopback needs "
                                                     "$SCORING_SERVE_TOKEN")] = "127.0.0.1",
              port: Annotated[int, typer.Option(help="TCP port")] = 8080,
              alias: Annotated[str | None, typer.Option(help="serve this alias (default model.alias); followed "
                                                             "on promotion")] = None,
              version: Annotated[int | None, typer.Option(help="serve this version, pinned")] = None,
              max_batch_size: Annotated[int, typer.Option(help="rows per micro-batch at most")] = 64,
              max_wait_ms: Annotated[float, typer.Option(help="how long a micro-batch waits for more requests "
                                                              "(0: never; concurrent requests still coalesce)")] = 0.0,
              max_body_kib: Annotated[int, typer.Option(help="request body limit (413 above)")] = 1024,
              reload_s: Annotated[float, typer.Option(help="seconds between checks of the alias")] = 5.0,
              log_requests: Annotated[bool, typer.Option(help="log every scored row for `scoring parity`")] = False,
              log_to: Annotated[str | None, typer.Option(help="where to log, and where the daily ledger rows "
                                                              "go (default: next to the results store)")] = None,
              daily_ledger: Annotated[bool, typer.Option(help="keep the service's daily ledger rows "
                                                              "(online_daily; `scoring runs` shows them)")] = True,
              on_rule_failure: Annotated[str, typer.Option(help="a row breaking a per-row rule of the suite: "
                                                                "reject (422) or warn (scored, flagged)")] = "reject") -> None:
    """Serve the model over HTTP: POST /v1/score, /healthz, /readyz, /metrics."""
    from scoring.online.app import serve
    from scoring.online.sinks import default_target

    cfg = load(config)
    home = log_to or default_target(cfg)
    serve(cfg, host=host, port=port, alias=alias, version=version, max_batch_size=max_batch_size,
          max_wait_ms=max_wait_ms, max_body_bytes=max_body_kib * 1024, reload_s=reload_s,
          log_requests=home if log_requests else None, on_rule=on_rule_failure,
          daily_to=home if daily_ledger else None)


@app.command("stream")
@handle_errors
def stream_cmd(config: ConfigOpt = None,
               stream: Annotated[str, typer.Option(help="input stream key (use a prefix of your own)")] = "scoring:events",
               redis_url: Annotated[str, typer.Option(help="Redis URL")] = "redis://127.0.0.1:6379/0",
               group: Annotated[str, typer.Option(help="consumer group")] = "scoring",
               consumer: Annotated[str | None, typer.Option(help="consumer name (default host:pid)")] = None,
               batch_size: Annotated[int, typer.Option(help="events per micro-batch at most")] = 256,
               max_wait_ms: Annotated[float, typer.Option(help="wait for a micro-batch to fill")] = 50.0,
               claim_idle_ms: Annotated[int, typer.Option(help="reclaim another consumer's entries pending "
                                                               "this long")] = 30_000,
               dead_letter: Annotated[str | None, typer.Option(help="dead-letter stream (default "
                                                                    "<stream>:dead)")] = None,
               output: Annotated[str | None, typer.Option(help="also add each score to this stream")] = None,
               max_deliveries: Annotated[int, typer.Option(help="an event delivered more times than this (its "
                                                                "consumers died or failed on it) is dead-lettered "
                                                                "instead of handled again")] = 5,
               sink: Annotated[str | None, typer.Option(help="PostgreSQL URL or DuckDB file for "
                                                             "stream_predictions (default: next to the results)")] = None,
               sink_schema: Annotated[str, typer.Option(help="PostgreSQL schema of the online tables")] = "scoring_online",
               alias: Annotated[str | None, typer.Option(help="score with this alias (followed)")] = None,
               version: Annotated[int | None, typer.Option(help="score with this version, pinned")] = None,
               max_events: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
               idle_exit_s: Annotated[float | None, typer.Option(help="stop after this long without events")] = None,
               reload_s: Annotated[float, typer.Option(help="seconds between checks of the alias")] = 5.0) -> None:
    """Score the events of a Redis stream (consumer group, at least once, idempotent table)."""
    from scoring.online.sinks import default_target
    from scoring.online.stream import StreamSettings, consume

    if max_deliveries < 1:
        from scoring.errors import ConfigError

        raise ConfigError(f"--max-deliveries {max_deliveries}: give how many deliveries an event gets, 1 or more")
    cfg = load(config)
    settings = StreamSettings(stream, group, consumer or f"{socket.gethostname()}:{os.getpid()}", batch_size,
                              max_wait_ms, claim_idle_ms, dead_letter, output, max_deliveries=max_deliveries)
    counts = consume(cfg, redis_url=redis_url, settings=settings, sink_target=sink or default_target(cfg),
                     sink_schema=sink_schema, alias=alias, version=version, max_events=max_events,
                     idle_exit_s=idle_exit_s, reload_s=reload_s)
    print_json_line(counts)


@app.command("parity")
@handle_errors
def parity_cmd(config: ConfigOpt = None,
               since: Annotated[str | None, typer.Option(help="replay rows logged since this ISO date or time "
                                                              "(UTC; default: everything)")] = None,
               log_to: Annotated[str | None, typer.Option(help="where the service/consumer logged (default: "
                                                               "next to the results store)")] = None,
               schema: Annotated[str, typer.Option(help="PostgreSQL schema of the online tables")] = "scoring_online",
               tolerance: Annotated[float, typer.Option(help="largest accepted |online - batch|")] = 1e-12) -> None:
    """Replay logged requests and stream events through the batch path; exit 1 if any row differs."""
    from scoring.online.parity import replay
    from scoring.online.sinks import Sink, default_target

    cfg = load(config)
    when = None
    if since is not None:
        try:
            when = dt.datetime.fromisoformat(since)
        except ValueError:
            raise ConfigError(f"--since {since!r} is not an ISO date or time (e.g. 2026-03-07 or "
                              "2026-03-07T12:00)") from None
    report = replay(cfg, Sink(log_to or default_target(cfg), schema), when, tolerance)
    print_json_line({"rows": report.rows, "max_abs_diff": report.max_abs_diff,
                     "differences": len(report.differences), "by_version": report.by_version})
    for d in report.differences[:20]:
        print_json_line(d)
    if not report.ok:
        raise typer.Exit(1)
