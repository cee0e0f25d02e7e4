"""Staged chunk outputs: Parquet files under a run folder, each with a manifest written last.

A chunk counts as complete only when its manifest exists and the file's checksum matches, so a
retried run reuses finished chunks and redoes partial ones.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

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


class Stage:
    """The staging folder of one run: ``<root>/chunk-00000.parquet`` + ``.q.parquet`` + ``.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _paths(self, index: int) -> tuple[Path, Path, Path]:
        stem = self.root / f"chunk-{index:05d}"
        return stem.with_suffix(".parquet"), stem.with_suffix(".q.parquet"), stem.with_suffix(".json")

    def _write(self, table: pa.Table, path: Path) -> str:
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp, compression="lz4")
        os.replace(tmp, path)
        return sha256_file(path)

    def write(self, index: int, rows_in: int, predictions: pa.Table, quarantine: pa.Table,
              stats: dict[str, Any] | None = None) -> ChunkManifest:
        """Stage one chunk; the manifest (with the chunk's JSON ``stats``) is written last, atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        pred_path, q_path, manifest_path = self._paths(index)
        manifest = ChunkManifest(index, rows_in, predictions.num_rows, quarantine.num_rows,
                                 self._write(predictions, pred_path), self._write(quarantine, q_path),
                                 stats or {})
        tmp = manifest_path.with_name(manifest_path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(manifest)))
        os.replace(tmp, manifest_path)
        return manifest

    def completed(self, index: int) -> ChunkManifest | None:
        """The manifest of a complete, verified chunk, else None."""
        pred_path, q_path, manifest_path = self._paths(index)
        if not manifest_path.is_file():
            return None
        manifest = ChunkManifest(**json.loads(manifest_path.read_text()))
        if (not pred_path.is_file() or not q_path.is_file()
                or sha256_file(pred_path) != manifest.predictions_sha256
                or sha256_file(q_path) != manifest.quarantine_sha256):
            logger.warning("staged chunk %s in %s failed verification; it will be redone", index, self.root)
            return None
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
