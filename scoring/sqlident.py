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


def quote(name: str) -> str:
    """Double-quote one validated identifier part."""
    return '"' + validate_identifier(name).replace('"', '""') + '"'


def quote_qualified(name: str) -> str:
    """Quote ``schema.table`` or ``table``; each part is validated."""
    return ".".join(quote(part) for part in name.split("."))
