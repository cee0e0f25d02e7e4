"""The Typer application, its global options, and what every command group shares.

Each command group lives in its own module of ``scoring.cli`` and registers itself on ``app`` (or on
``models_app``) when ``scoring.cli`` imports it. A domain error (``ScoringError``) becomes one red line on
stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from typer.core import TyperOption

from scoring.errors import ScoringError

if TYPE_CHECKING:
    from scoring.config import Config

LOG_TIME = "%Y-%m-%dT%H:%M:%S"  # ISO 8601 in the log lines (Rich's default is the locale's, e.g. 12/06/26)


def _flag_type(display: Callable[..., str | None]) -> Callable[..., str | None]:
    """Typer's help shows a ``<bool>`` value for a flag as if it took one; a flag has no value to show."""

    @functools.wraps(display)
    def shown(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else display(self, ctx)

    return shown


# Typer 0.29 has no setting for it; patched once, here, where the CLI is built (checked by tests/cli).
TyperOption.display_type_rich = _flag_type(TyperOption.display_type_rich)  # type: ignore[method-assign]

app = typer.Typer(help="Scheduled batch scoring: extract a day, validate, score in chunks, publish atomically.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="The model store: list, show, register, suite; evaluate, check, promote, compare.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()
err = Console(stderr=True)
logger = logging.getLogger("scoring.cli")

def print_json_line(value: Any) -> None:
    """Print ``value`` as one JSON document on one line of stdout, whatever its length (Rich wraps at the
    terminal's width, 80 columns when piped) and never read as Rich markup: what a script reads line by
    line (``scoring stream``, ``scoring parity``)."""
    console.print(json.dumps(value, default=str), soft_wrap=True, highlight=False, markup=False)


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (default $SCORING_CONFIG "
                                                "or ./scoring.yaml)")]


def load(path: Path | None) -> Config:
    """The validated configuration from ``--config``, ``$SCORING_CONFIG`` or ``./scoring.yaml``.

    Raises:
        ConfigError: the file is missing or invalid (one line naming the file and the key).
    """
    from scoring.config import load_config

    return load_config(path)


def _is_io_error(exc: BaseException) -> bool:
    """DuckDB's I/O errors (``IOException``: short reads of a truncated file, write failures)."""
    import duckdb

    return isinstance(exc, duckdb.IOException)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one red line and exit code 1, instead of a traceback.

    A domain error (``ScoringError``) is printed as it is. Any other exception (a bug, or a library error no
    layer translated) is printed as ``unexpected <type>: <first line>``; its traceback is logged at DEBUG,
    so ``--verbose`` shows it. Typer's own exits and usage errors pass through.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ScoringError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except (typer.Exit, typer.Abort, typer.TyperException):  # its own exits and usage errors
            raise
        except Exception as exc:
            if _is_io_error(exc):  # a truncated or damaged file, a full disk: the user's to fix, not a bug
                first = " ".join(str(exc).split())[:300]
                err.print(f"[bold red]error:[/] {escape(first)}: a truncated or damaged file, or a full disk? "
                          "check the file named", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            logger.debug("traceback of the unexpected error", exc_info=True)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            err.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(first)} (run with --verbose "
                      "for the traceback; please report it)", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False, log_time_format=LOG_TIME)])
    for name in ("scoring", "features"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def day_or_yesterday(text: str | None, zone: str = "UTC") -> dt.date:
    """``text`` as a date (YYYY-MM-DD), or yesterday's business day in ``zone`` when it is None."""
    from scoring.dates import parse_day, yesterday

    return parse_day(text) if text else yesterday(zone)


def progress_bar() -> Progress:
    """A transient progress bar on stderr."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


@contextlib.contextmanager
def step_progress(title: str) -> Iterator[Callable[[str], None]]:
    """A callback ``step(name)`` for long multi-step work (training, registration).

    On a terminal: a Rich spinner per step on stderr with its elapsed time; a finished step stays as a
    line with its duration. Elsewhere (a pipe, a log file): each step is one INFO log line (ISO time).
    """
    if not err.is_terminal:
        yield lambda what: logger.info("%s: %s", title, what)
        return
    with Progress(SpinnerColumn(finished_text="[green]done"), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=err) as progress:
        current: list[TaskID] = []

        def step(what: str) -> None:
            if current:
                progress.update(current[-1], completed=1, total=1)
            current.append(progress.add_task(f"{title}: {what}", total=None))

        yield step
        if current:
            progress.update(current[-1], completed=1, total=1)
