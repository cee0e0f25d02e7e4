"""Is the process of a ``running`` ledger row still alive? Decides which attempts are ``interrupted``.

An attempt records its host, pid and a heartbeat. On the same host the answer is exact: the pid must exist,
not be a zombie, and have started before the attempt did (a reused pid started later). For another host only
the heartbeat can tell: an attempt silent for longer than ``heartbeat_timeout_s`` is taken as gone.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path

HEARTBEAT_S = 30.0  # a running attempt refreshes heartbeat_at at most this often (best effort)


def _proc_start(pid: int) -> dt.datetime | None:
    """The start time of ``pid`` from /proc (Linux), None when unknown; raises ProcessLookupError when gone."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        text = stat.read_text()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: killed, not yet reaped by its parent
        raise ProcessLookupError(pid)
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        ticks = os.sysconf("SC_CLK_TCK")
        return dt.datetime.fromtimestamp(boot + int(fields[19]) / ticks, dt.UTC)
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def pid_alive(pid: int, since: dt.datetime | None = None) -> bool:
    """Whether process ``pid`` of this host exists and (when ``since`` is given) started before ``since``."""
    try:
        started = _proc_start(pid) if Path("/proc").is_dir() else None
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if started is not None and since is not None:
        since = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
        return started <= since + dt.timedelta(seconds=2)  # jiffies and clock rounding
    return True


def attempt_alive(host: str | None, pid: int | None, started_at: dt.datetime, heartbeat_at: dt.datetime | None,
                  heartbeat_timeout_s: float, now: dt.datetime | None = None) -> bool:
    """Whether a ``running`` attempt may still finish.

    Args:
        host, pid: where it runs (NULL for rows written before these columns existed).
        started_at: its start (UTC).
        heartbeat_at: its last sign of life (UTC), or None.
        heartbeat_timeout_s: silence after which an attempt of another host (or without pid) is gone.
        now: the current time (UTC), for tests.
    """
    if host == socket.gethostname() and pid:
        return pid_alive(int(pid), started_at)
    now = now or dt.datetime.now(dt.UTC)
    last = heartbeat_at or started_at
    last = last if last.tzinfo else last.replace(tzinfo=dt.UTC)
    return (now - last).total_seconds() < heartbeat_timeout_s
