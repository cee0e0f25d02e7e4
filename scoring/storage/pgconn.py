"""PostgreSQL connections over ADBC: retried with backoff, one-line errors, credentials redacted.

Used by the PostgreSQL source and results store. Nothing here ever puts a password in a message:
URLs are shown through ``redact_url`` and driver messages are scrubbed of the password too.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

MAX_ATTEMPT_S = 10  # libpq connect_timeout of one attempt (libpq's minimum is 2)
MAX_BACKOFF_S = 5.0

# The password runs to the last '@' before the host (an unencoded '@' or space in a password is common), the
# host being what follows with no '@', up to '/', '?', a quote, a space or the end.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\n]*)(?P<at>@)"
                           r"(?=[^@\s/?'\"]*(?:[/?'\"\s]|$))")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)

# (substring of the libpq message, reason shown to the user, worth retrying)
_REASONS: tuple[tuple[str, str, bool], ...] = (
    ("password authentication failed", "authentication failed", False),
    ("no pg_hba.conf entry", "authentication failed", False),
    ("no password supplied", "authentication failed", False),
    ("authentication failed", "authentication failed", False),
    ("role \"", "authentication failed", False),
    ("database \"", "unknown database", False),
    ("connection refused", "connection refused", True),
    ("timeout expired", "timeout", True),
    ("timed out", "timeout", True),
    ("could not translate host name", "unknown host", True),
    ("the database system is starting up", "server starting up", True),
    ("the database system is shutting down", "server shutting down", True),
    ("too many clients", "too many connections", True),
    ("server closed the connection", "connection lost", True),
    ("network is unreachable", "network unreachable", True),
    ("no route to host", "no route to host", True),
)


def redact_url(text: str) -> str:
    """``text`` with the password of any URL or ``password=`` setting replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}" if m["pw"] else m[0], text)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def _password(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        if parts.password:
            return unquote(parts.password)
    except ValueError:
        pass
    found = _KV_PASSWORD.search(url)
    return found["pw"].strip("'") if found else None


def scrub(text: str, url: str) -> str:
    """Remove every trace of the URL's password from ``text`` (a driver message, say)."""
    text = redact_url(text)
    secret = _password(url)
    if secret:
        text = text.replace(secret, "***")
    return text


def server_of(url: str) -> str:
    """``host:port/database`` of a postgresql:// URL or a ``key=value`` DSN, for messages."""
    if "://" in url:
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1] or "localhost"
        return f"{host}{parts.path or ''}"
    kv = dict(re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url))
    host = kv.get("host", "localhost").strip("'")
    port = kv.get("port", "5432").strip("'")
    return f"{host}:{port}/{kv.get('dbname', '').strip(chr(39))}"


def resolve_url(url: str | None, connection_id: str | None) -> str:
    """The URL to use: the configured one, else the Airflow Connection URI in ``AIRFLOW_CONN_<ID>``."""
    if url:
        return url
    from scoring.errors import ConfigError

    if connection_id:
        env = f"AIRFLOW_CONN_{connection_id.upper()}"
        value = os.environ.get(env, "")
        if value.startswith(("postgres://", "postgresql://")):
            return value
        raise ConfigError(f"connection {connection_id!r}: no postgresql:// URI in ${env}; set 'url' instead")
    raise ConfigError("kind postgres needs 'url' (or 'connection_id' under Airflow)")


def classify(message: str) -> tuple[str, bool]:
    """(reason for the user, whether retrying may help) of a libpq connection failure."""
    low = message.lower()
    for needle, reason, transient in _REASONS:
        if needle in low:
            return reason, transient
    return "connection failed", False


def _detail(message: str) -> str:
    """The informative part of an ADBC/libpq connection message, on one line."""
    text = re.sub(r"^\w+: \[libpq\] (Failed to connect: )?", "", message.strip())
    text = re.sub(r"connection to server at .*? failed: ", "", text)
    text = text.replace("FATAL:", "").split("\n")[0]
    return " ".join(text.split())


def with_connect_timeout(url: str, seconds: int) -> str:
    """``url`` with libpq's ``connect_timeout`` (per attempt) unless it already sets one."""
    if "connect_timeout" in url:
        return url
    if "://" in url:
        return f"{url}{'&' if '?' in url else '?'}connect_timeout={seconds}"
    return f"{url} connect_timeout={seconds}"


def connect(url: str, timeout_s: float, what: str, error: type[Exception]) -> Any:
    """Open an ADBC connection (autocommit off), retrying transient failures with backoff.

    Args:
        url: a libpq URL or DSN (may carry credentials; they never reach a message).
        timeout_s: how long to keep retrying refused, timed-out or unreachable connections.
        what: "source" or "results", for messages.
        error: the exception class raised on failure (SourceError or PublishError).

    Returns:
        An ``adbc_driver_manager.dbapi.Connection``. Authentication failures and unknown
        databases are not retried: waiting cannot fix them.
    """
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as pg

    start = time.monotonic()
    deadline = start + timeout_s
    delay, attempts = 0.2, 0
    while True:
        attempts += 1
        per_attempt = int(min(max(deadline - time.monotonic(), 2), MAX_ATTEMPT_S))
        try:
            return pg.connect(with_connect_timeout(url, per_attempt))
        except adbc_driver_manager.Error as exc:
            message = str(exc)
            reason, transient = classify(message)
            remaining = deadline - time.monotonic()
            if not transient or remaining <= 0:
                detail = scrub(_detail(message), url)
                tried = f" (gave up after {attempts} attempts in {time.monotonic() - start:.1f}s)" \
                    if transient else ""
                text = f"cannot connect to the PostgreSQL {what} at {server_of(redact_url(url))}: {reason}"
                if detail and detail.lower() != reason:
                    text += f": {detail}"
                raise error(text + tried) from None
            logger.warning("PostgreSQL %s at %s: %s; retrying in %.1fs", what, server_of(redact_url(url)),
                           reason, min(delay, remaining))
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_BACKOFF_S)


def error_line(exc: BaseException, url: str) -> str:
    """One scrubbed line of a driver error raised after connecting: the message and its DETAIL."""
    text = re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", str(exc).strip())
    text = re.sub(r"^Failed to [\w ]+?: (PGRES_\w+ )?", "", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    keep = [lines[0]] + [line for line in lines[1:] if line.startswith("DETAIL:")]
    out = " ".join(" ".join(keep).replace("ERROR:", "").split())
    return scrub(re.sub(r"\s*\.?\s*SQLSTATE: \w+\s*$", "", out), url)
