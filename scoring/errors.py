"""Domain errors. Each carries a one-line message meant for the user, naming the thing at fault."""

from __future__ import annotations


class ScoringError(Exception):
    """Base class: a failure the CLI reports as one line, without a traceback."""


class ConfigError(ScoringError, ValueError):
    """The configuration file is missing, unreadable or invalid."""


class SourceError(ScoringError):
    """The source database or table cannot be read."""


class SchemaError(ScoringError):
    """The source columns do not match the model's feature schema."""


class ModelStoreError(ScoringError):
    """A model, version or alias is unknown, or an artifact fails verification."""


class ValidationFailed(ScoringError):
    """A batch-level data quality rule failed; nothing was published."""


class PublishError(ScoringError):
    """The results database could not be written."""


class StagingError(ScoringError):
    """A chunk could not be staged (disk full, permissions); the message names the path."""


class Superseded(ScoringError):
    """A newer run of the same (day, model) already published; this run published nothing."""


class ResultsLocked(PublishError):
    """The results database stayed locked by another process past ``results.lock_timeout_s``."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none: what a ledger row, a job row
    or a log line shows of an error (the one helper for it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """``first_line``, prefixed with the type's name unless ``exc`` is a ScoringError (whose messages are
    written for users): the error line of a failed run or job."""
    return first_line(exc) if isinstance(exc, ScoringError) else f"{type(exc).__name__}: {first_line(exc)}"
