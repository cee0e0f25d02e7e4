"""Staged chunk outputs: Parquet files under a run folder, each with a manifest written last.

A chunk counts as complete only when its manifest exists and the file's checksum matches, so a
retried run reuses finished chunks and redoes partial ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scoring.errors import StagingError
from scoring.storage.checksums import sha256_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkManifest:
    """What one staged chunk holds."""

    index: int
    rows_in: int
    scored: int
    rejected: int
    predictions_sha256: str
    quarantine_sha256: str
    stats: dict[str, Any] = field(default_factory=dict)  # JSON counts of the quality gate and drift
    input_digest: str = ""  # blake2b of the chunk's source rows (Arrow IPC); a resumed run reuses on a match


class Stage:
    """The staging folder of one run: ``<root>/chunk-00000.parquet`` + ``.q.parquet`` + ``.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock_fd: int | None = None
        self.reused: set[int] = set()  # chunks ``completed`` found staged and verified

    def lock(self, shared: bool = False) -> bool:
        """Take this process's lock on the folder (``.lock``, flock: released when the process dies, SIGKILL
        included); False when another live process holds it. Cleanup removes only folders it can lock.

        Raises:
            StagingError: the folder cannot be created (disk full, permissions), naming it.
        """
        import fcntl

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StagingError(f"cannot create staging folder {str(self.root)!r}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _paths(self, index: int) -> tuple[Path, Path, Path]:
        stem = self.root / f"chunk-{index:05d}"
        return stem.with_suffix(".parquet"), stem.with_suffix(".q.parquet"), stem.with_suffix(".json")

    def _write(self, table: pa.Table, path: Path) -> str:
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp, compression="lz4")
        os.replace(tmp, path)
        return sha256_file(path)

    def write(self, index: int, rows_in: int, predictions: pa.Table, quarantine: pa.Table,
              stats: dict[str, Any] | None = None, input_digest: str = "") -> ChunkManifest:
        """Stage one chunk; the manifest (with the chunk's JSON ``stats``) is written last, atomically.

        Raises:
            StagingError: the files cannot be written (disk full, permissions), naming the folder.
        """
        pred_path, q_path, manifest_path = self._paths(index)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            manifest = ChunkManifest(index, rows_in, predictions.num_rows, quarantine.num_rows,
                                     self._write(predictions, pred_path), self._write(quarantine, q_path),
                                     stats or {}, input_digest)
            tmp = manifest_path.with_name(manifest_path.name + ".tmp")
            tmp.write_text(json.dumps(asdict(manifest)))
            os.replace(tmp, manifest_path)
        except OSError as exc:
            raise StagingError(f"cannot stage chunk {index} in {str(self.root)!r}: "
                               f"{exc.strerror or exc}") from None
        return manifest

    def completed(self, index: int, input_digest: str | None = None) -> ChunkManifest | None:
        """The manifest of a complete, verified chunk (staged from rows with ``input_digest`` when given), else
        None."""
        pred_path, q_path, manifest_path = self._paths(index)
        if not manifest_path.is_file():
            return None
        manifest = ChunkManifest(**json.loads(manifest_path.read_text()))
        if input_digest is not None and manifest.input_digest != input_digest:
            logger.info("staged chunk %s in %s was cut from other rows; it will be redone", index, self.root)
            return None
        if (not pred_path.is_file() or not q_path.is_file()
                or sha256_file(pred_path) != manifest.predictions_sha256
                or sha256_file(q_path) != manifest.quarantine_sha256):
            logger.warning("staged chunk %s in %s failed verification; it will be redone", index, self.root)
            return None
        self.reused.add(index)
        return manifest

    def manifests(self) -> list[ChunkManifest]:
        """Every complete chunk, in index order."""
        found = sorted(int(p.stem.split("-")[1]) for p in self.root.glob("chunk-*.json"))
        return [m for m in (self.completed(i) for i in found) if m is not None]

    def prediction_files(self, manifests: list[ChunkManifest]) -> list[Path]:
        return [self._paths(m.index)[0] for m in manifests if m.scored]

    def quarantine_files(self, manifests: list[ChunkManifest]) -> list[Path]:
        return [self._paths(m.index)[1] for m in manifests if m.rejected]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.unlock()


def input_digest(batch: pa.RecordBatch | pa.Table) -> str:
    """A digest of a chunk's source rows (values and order), to tell a resumed run whether chunk k is the same."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write(batch)
    return hashlib.blake2b(sink.getvalue(), digest_size=16).hexdigest()


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            newest = max(newest, path.stat().st_mtime)
    return newest


def remove_stale(parent: Path, before: float, keep: Path | None = None) -> list[Path]:
    """Remove the staging folders directly under ``parent`` that no live process holds and whose newest file
    is older than ``before`` (a POSIX timestamp); ``keep`` is left alone. Returns the folders removed.

    A folder is held while its run (CLI, exclusive) or a scheduler's chunk task (shared) has its ``.lock``;
    a scheduler run folder holds its plans' folders, whose locks are checked too.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for folder in sorted(p for p in parent.iterdir() if p.is_dir()):
        if keep is not None and folder.resolve() == Path(keep).resolve():
            continue
        try:
            if _newest_mtime(folder) >= before:
                continue
        except OSError:
            continue
        stages = [Stage(folder), *(Stage(p.parent) for p in folder.rglob(".lock") if p.parent != folder)]
        held = [s for s in stages if s.lock()]
        if len(held) == len(stages):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        for s in held:
            s.unlock()
    if removed:
        logger.info("removed %s stale staging folder(s) under %s", len(removed), parent)
    return removed


def cleanup(staging_dir: Path, older_than_s: float) -> list[Path]:
    """``scoring cleanup``: remove every staging folder (``<staging>/<model>/<day>/<attempt>``) untouched for
    ``older_than_s`` seconds and held by no live process; empty day and model folders go too."""
    import time

    removed: list[Path] = []
    if not staging_dir.is_dir():
        return removed
    for day_dir in sorted(staging_dir.glob("*/*")):
        if day_dir.is_dir():
            removed += remove_stale(day_dir, time.time() - older_than_s)
            with contextlib.suppress(OSError):
                day_dir.rmdir()  # only when empty
    for model_dir in staging_dir.iterdir():
        with contextlib.suppress(OSError):
            model_dir.rmdir()
    return removed
