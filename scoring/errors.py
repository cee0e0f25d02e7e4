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
