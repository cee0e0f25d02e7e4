"""`scoring sample-data`: write the deterministic sample source (loan applications) to DuckDB."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from scoring.cli.app import app, console, day_or_yesterday, handle_errors


@app.command("sample-data")
@handle_errors
def sample_data(out: Annotated[Path, typer.Option(help="DuckDB file to write")] = Path("sample_data/sample.duckdb"),
                end: Annotated[str | None, typer.Option(help="last day (default: yesterday)")] = None,
                days: Annotated[int, typer.Option(help="number of days")] = 60,
                rows_per_day: Annotated[int, typer.Option(help="rows per day")] = 2000,
                seed: Annotated[int, typer.Option(help="random seed")] = 42) -> None:
    """Generate the deterministic sample source (loan applications)."""
    from sample_data.generate import generate

    last = day_or_yesterday(end)
    first = last - dt.timedelta(days=days - 1)
    total = generate(out, first, days, rows_per_day, seed=seed)
    console.print(f"wrote {total} rows ({first} .. {last}) to {out}")
