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
