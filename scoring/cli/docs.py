"""`scoring docs`: build the GX Data Docs page of a run from the run ledger (never done by `scoring run`)."""

from __future__ import annotations

from typing import Annotated

import typer

from scoring.cli.app import ConfigOpt, app, console, err, handle_errors, load
from scoring.errors import ScoringError


@app.command()
@handle_errors
def docs(config: ConfigOpt = None,
         day: Annotated[str | None, typer.Option(help="the latest run of this day, YYYY-MM-DD")] = None,
         run: Annotated[str | None, typer.Option("--run", help="this run id (see `scoring runs`)")] = None) -> None:
    """Build a run's Data Docs (default: the model's latest run) and print the page's path."""
    from scoring.dates import parse_day
    from scoring.quality.data_docs import build_docs

    if day and run:
        raise ScoringError("give --day or --run, not both")
    cfg = load(config)
    page = build_docs(cfg, day=parse_day(day) if day else None, run_id=run)
    if err.is_terminal:  # a person reads the verdict; a script gets the page's path alone
        err.print(docs_verdict(page), highlight=False, markup=False)
    console.print(str(page), highlight=False, soft_wrap=True)


def docs_verdict(page: object) -> str:
    """The verdict sentence the page carries (``data_docs.add_verdict``), for the terminal."""
    import html
    import re
    from pathlib import Path

    from scoring.storage.objects import is_uri, location

    text = location(page).read_text() if is_uri(page) else Path(str(page)).read_text(encoding="utf-8")
    found = re.search(r"<strong>Run verdict\.</strong> (.*?)</div>", text)
    return html.unescape(found.group(1)) if found else "verdict unknown (a page built before verdicts)"
