"""The daily ledger of a service or consumer, counted in memory between writes to ``online_daily``.

Counts are rows: ``received`` (every row a request or event carried), ``scored``, ``rejected`` (a per-row
rule of the suite refused it) and ``invalid`` (not JSON, not a row, or not fitting the signature), per
business day (``schedule.timezone``) and model version. ``Sink.add_daily`` adds them to the stored row.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from scoring.dates import zone_info
from scoring.online.sinks import DAILY_COUNTS, utcnow


class DailyCounts:
    """Thread-safe counts of one service (``kind`` serve) or consumer (``kind`` stream) since the last drain."""

    def __init__(self, kind: str, service: str, timezone: str) -> None:
        self.kind, self.service, self.zone = kind, service, zone_info(timezone)
        self._lock = threading.Lock()
        self._rows: dict[tuple[dt.date, str, int], dict[str, Any]] = {}

    def add(self, model: str, version: int, **counts: int) -> None:
        """Add ``counts`` (``received``, ``scored``, ``rejected``, ``invalid``) for today's row of the version."""
        now = utcnow()
        key = (dt.datetime.now(self.zone).date(), model, int(version))
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = {"day": key[0], "kind": self.kind, "service": self.service,
                                         "model_name": model, "model_version": key[2], "first_at": now,
                                         **dict.fromkeys(DAILY_COUNTS, 0)}
            for name, n in counts.items():
                row[name] += int(n)
            row["last_at"] = now

    def drain(self) -> list[dict[str, Any]]:
        """The rows counted since the last drain (``Sink.add_daily`` rows); the counts start again from zero."""
        with self._lock:
            rows, self._rows = list(self._rows.values()), {}
        return rows

    def restore(self, rows: list[dict[str, Any]]) -> None:
        """Put back rows a failed write did not store (their counts are added to what came since)."""
        with self._lock:
            for row in rows:
                key = (row["day"], row["model_name"], row["model_version"])
                have = self._rows.get(key)
                if have is None:
                    self._rows[key] = row
                    continue
                for name in DAILY_COUNTS:
                    have[name] += row[name]
                have["first_at"] = min(have["first_at"], row["first_at"])
