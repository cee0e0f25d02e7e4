"""Identifier validation and quoting: configuration values never reach SQL as raw text."""

from __future__ import annotations

import re

from scoring.errors import ConfigError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise ConfigError naming it."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ConfigError(f"invalid {what} {name!r}: use letters, digits and underscores")
    return name


def validate_column_name(name: str, what: str = "column name") -> str:
    """Return ``name`` if it can be a quoted column name of DuckDB and PostgreSQL (any spelling: spaces,
    parentheses, quotes, non-ASCII), else raise ConfigError: empty, or holding a NUL character."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ConfigError(f"invalid {what} {name!r}: a column name must be non-empty text without NUL characters")
    return name


def quote(name: str) -> str:
    """Double-quote one identifier (a column or a validated table part) of any spelling: embedded double
    quotes are doubled, as SQL (DuckDB, PostgreSQL) requires; a NUL character is refused (ConfigError)."""
    return '"' + validate_column_name(name, "identifier").replace('"', '""') + '"'


def quote_qualified(name: str) -> str:
    """Quote ``schema.table`` or ``table``; each part is validated (letters, digits, underscores)."""
    return ".".join(quote(validate_identifier(part, "table name")) for part in name.split("."))
