"""A worker's local copy of model versions kept on an object store, keyed by the artifact's sha256.

``<cache>/<sha256>[-<code digest>]/{model.joblib,code/...}``: what :meth:`ModelStore.load` needs, fetched once
per host. Every use re-verifies the entry against the version's metadata (the artifact's and each code file's
sha256): a load from the cache (``ObjectModelStore.load``) hashes the entry once, in ``ModelStore.load``'s own
check before unpickling. An entry that fails (edited, truncated, half-deleted) is discarded and fetched again,
and a fetched object that fails is refused before it is unpickled (the store's copy was modified after
registration).

The cache folder is ``$SCORING_MODEL_CACHE`` if set, else ``$XDG_CACHE_HOME/batch-scoring/models`` (default
``~/.cache/batch-scoring/models``), else ``<tmp>/batch-scoring-models-<uid>`` when the home is not writable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs as pafs

from scoring.errors import ModelStoreError
from scoring.models.code import CODE_DIR, verify_code
from scoring.models.store import ARTIFACT, ModelVersion
from scoring.storage.checksums import sha256_file

logger = logging.getLogger(__name__)

CACHE_ENV = "SCORING_MODEL_CACHE"


def cache_dir() -> Path:
    """The cache folder (see the module docstring), created if missing.

    Raises:
        ModelStoreError: ``$SCORING_MODEL_CACHE`` is set and cannot be created.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        try:
            Path(configured).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelStoreError(f"model cache {configured!r} ({CACHE_ENV}) cannot be created: {exc.strerror}") \
                from None
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "batch-scoring" / "models"
    try:
        base.mkdir(parents=True, exist_ok=True)
        return base
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"batch-scoring-models-{os.getuid()}"
        fallback.mkdir(mode=0o700, exist_ok=True)
        return fallback


def entry_name(mv: ModelVersion) -> str:
    """The cache key of a version: its artifact's sha256, plus a digest of its code files when it has some."""
    files = mv.code.get("files") or {}
    if not files:
        return mv.meta["sha256"]
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    return f"{mv.meta['sha256']}-{digest}"


def _problem(folder: Path, mv: ModelVersion, label: str) -> str | None:
    """Why ``folder`` is not a faithful copy of ``mv`` (None when it is)."""
    artifact = folder / ARTIFACT
    if not artifact.is_file():
        return f"{ARTIFACT} is missing"
    actual = sha256_file(artifact)
    if actual != mv.meta["sha256"]:
        return f"artifact checksum mismatch (expected {mv.meta['sha256'][:12]}..., found {actual[:12]}...)"
    try:
        verify_code(folder, mv.code, label)
    except ModelStoreError as exc:
        return str(exc)
    return None


def _fetch(mv: ModelVersion, fs: pafs.FileSystem, into: Path) -> None:
    remote = mv.path  # a StagePath of the version's prefix
    objects = [ARTIFACT, *(f"{CODE_DIR}/{rel}" for rel in (mv.code.get("files") or {}))]
    for rel in objects:
        local = into / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with fs.open_input_stream(f"{remote.path}/{rel}", compression=None) as src, local.open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except (OSError, FileNotFoundError) as exc:
            raise ModelStoreError(f"model {mv.name} v{mv.version}: cannot fetch {remote}/{rel}: {exc}") from None


def cached_entry(mv: ModelVersion, root: Path | None = None) -> ModelVersion | None:
    """``mv`` with ``path`` its cache entry when the entry's folder exists, NOT verified (None otherwise).

    For a caller that verifies it anyway: ``ModelStore.load`` checks the artifact's and code files' sha256
    before unpickling, so a load from the cache needs one hash of the artifact, not two. On a
    ``ModelStoreError`` from that load, :func:`discard_entry` it and load :func:`cached_version` instead.
    """
    folder = (root or cache_dir()) / entry_name(mv)
    return ModelVersion(mv.name, mv.version, folder, mv.meta) if folder.is_dir() else None


def discard_entry(entry: ModelVersion) -> None:
    """Remove a cache entry (a folder from :func:`cached_entry`); the next use fetches it again."""
    shutil.rmtree(entry.path, ignore_errors=True)


def cached_version(mv: ModelVersion, fs: pafs.FileSystem, root: Path | None = None) -> ModelVersion:
    """The local, verified copy of an object-store version ``mv``: the cache entry if it verifies, else a
    fresh fetch (a failing entry is discarded first, with a warning).

    Args:
        mv: a version read from an object store (``mv.path`` a StagePath).
        fs: its filesystem.
        root: the cache folder (default :func:`cache_dir`).

    Returns:
        ``mv`` with ``path`` the local entry (metadata unchanged: the signature is checked on the original).

    Raises:
        ModelStoreError: the fetched artifact or a code file differs from the metadata's sha256 (the object
            was modified on the store), or an object cannot be fetched.
    """
    label = f"model {mv.name} v{mv.version}"
    folder = (root or cache_dir()) / entry_name(mv)
    if folder.is_dir():
        why = _problem(folder, mv, label)
        if why is None:
            logger.debug("%s: using the cached copy %s", label, folder)
            return ModelVersion(mv.name, mv.version, folder, mv.meta)
        logger.warning("%s: the cached copy in %s fails verification (%s); fetching it again", label, folder, why)
        shutil.rmtree(folder, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".fetch-"))
    try:
        _fetch(mv, fs, tmp)
        why = _problem(tmp, mv, label)
        if why is not None:
            raise ModelStoreError(f"{label}: the store's copy at {mv.path} fails verification ({why}); refusing "
                                  "to load a modified object: restore it or register the model again")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process of this host cached it meanwhile: use theirs, verified
            if _problem(folder, mv, label) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("%s: fetched from %s into the local cache %s", label, mv.path, folder)
    return ModelVersion(mv.name, mv.version, folder, mv.meta)
