"""Where a job may write its output file: only inside ``jobs.output_dir``, never through a symlink, never over
an existing file unless asked (``--overwrite``), never onto a file the product owns.

A job's submitter is not trusted with the worker's file system: without these rules ``--output`` could replace
another model's exported partition or any file the worker can write. The rules are checked at submit and again
just before the file is written (a folder swapped for a symlink in between is refused then).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from scoring.errors import ConfigError
from scoring.storage.results.liveness import pid_alive

logger = logging.getLogger(__name__)
TMP_GLOB = ".*.tmp"  # how job output files are written aside (scoring/run/jobs.py write_output)


def _has_symlink(path: Path, root: Path) -> Path | None:
    """The first component of ``path`` below ``root`` that is a symlink (the path itself included), or None."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


def allowed_output(text: str | Path, output_dir: Path, *, overwrite: bool = False,
                   protected_files: Iterable[Path | None] = (), protected_dirs: Iterable[Path | None] = (),
                   owner_check: object = None) -> Path:
    """The absolute path a job output may be written to, or a one-line refusal.

    Args:
        text: the ``--output`` as given: relative paths land under ``output_dir``.
        output_dir: ``jobs.output_dir`` (created if missing; the only folder outputs go to).
        overwrite: an existing file may be replaced.
        protected_files: files never written (results database, source database, the job's input).
        protected_dirs: folders never written into (model store, staging, reader export).
        owner_check: a callable ``(path) -> bool`` telling whether an existing file is this job's own (a retried
            job may replace what its earlier attempt wrote); None: every existing file counts as another's.

    Raises:
        ConfigError: outside ``output_dir``, through a symlink, onto a protected file or folder, or onto an
            existing file without ``overwrite``.
    """
    raw = Path(text)
    root = output_dir.resolve()
    candidate = raw if raw.is_absolute() else root / raw
    absolute = Path(os.path.abspath(candidate))  # '..' collapsed, symlinks not followed yet
    if not absolute.is_relative_to(root):
        raise ConfigError(f"--output {str(text)[:200]!r} is outside jobs.output_dir {str(root)!r}; write under it "
                          "(a relative --output lands there)")
    link = _has_symlink(absolute, root)
    if link is not None or not absolute.resolve().is_relative_to(root):
        raise ConfigError(f"--output {str(text)[:200]!r} goes through a symlink ({str(link or absolute)!r}); "
                          "job outputs are written to real folders under jobs.output_dir only")
    for protected in filter(None, protected_files):
        if absolute == Path(protected).resolve():
            raise ConfigError(f"--output {str(text)[:200]!r} would overwrite {str(protected)!r}")
    for folder in filter(None, protected_dirs):
        if absolute.is_relative_to(Path(folder).resolve()):
            raise ConfigError(f"--output {str(text)[:200]!r} is inside {str(folder)!r}, which the product owns")
    if absolute.exists() and not overwrite and not (callable(owner_check) and owner_check(absolute)):
        raise ConfigError(f"--output {str(absolute)!r} already exists; pass --overwrite to replace it")
    if absolute.exists() and not absolute.is_file():
        raise ConfigError(f"--output {str(absolute)!r} exists and is not a regular file")
    return absolute


def written_by_job(path: Path, job_id: str) -> bool:
    """Whether an existing output file holds the rows of ``job_id`` (its ``job_id`` column's first value):
    a retried job may replace what its own earlier attempt wrote. Unreadable files are another's."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            file = pq.ParquetFile(path)
            if "job_id" not in file.schema_arrow.names or file.metadata.num_rows == 0:
                return False
            first = file.read_row_group(0, columns=["job_id"]).column(0)
            return len(first) > 0 and first[0].as_py() == job_id
        import csv

        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            row = next(reader, None)
            return row is not None and row.get("job_id") == job_id
    except Exception:  # noqa: BLE001 - any unreadable file is not this job's
        return False


def remove_stale_tmp(folder: Path, older_than_s: float = 0.0) -> list[Path]:
    """Remove job output files left written aside (``.NAME.PID.tmp``) by a killed writer whose process is gone.

    Returns the removed paths. A file whose writer pid is alive on this host is kept.
    """
    import time

    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for tmp in folder.rglob(TMP_GLOB):
        pid = tmp.name.rsplit(".", 2)[-2] if tmp.name.count(".") >= 3 else ""
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        try:
            if now - tmp.stat().st_mtime >= older_than_s and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    if removed:
        logger.info("removed %d output file(s) a killed job left half-written under %s", len(removed), folder)
    return removed


def remove_finished_job_stages(jobs_root: Path, state_of: object, older_than_s: float) -> list[Path]:
    """Remove ``<staging>/jobs/<job id>/`` folders of jobs that ended (or that the ledger does not know)
    and were untouched for ``older_than_s``: a killed job's staged chunks. ``state_of(job_id)`` returns the
    job's ledger state or None. A queued or running job's folder is kept."""
    import shutil
    import time

    from scoring.storage.results.jobs_ledger import TERMINAL

    removed: list[Path] = []
    if not jobs_root.is_dir():
        return removed
    for folder in sorted(jobs_root.iterdir()):
        if not folder.is_dir() or folder.is_symlink():
            continue
        state = state_of(folder.name) if callable(state_of) else None
        newest = max((p.stat().st_mtime for p in folder.rglob("*")), default=folder.stat().st_mtime)
        if (state is None or state in TERMINAL) and time.time() - newest >= older_than_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
