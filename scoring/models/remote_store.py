"""The model store on an object store (``model.store: s3://bucket/prefix``): the same versions, aliases and
checks as the local store (:mod:`scoring.models.store`), with the guarantees rebuilt on what an object store
offers (whole-object writes, create-only writes, strongly consistent listings), so every host sees one store.

Layout under the store's prefix::

    <name>/<version>/.reserve          the version number, taken by a create-only write (host, pid, time)
    <name>/<version>/model.joblib      the artifact
    <name>/<version>/code/...          custom code (``--code``)
    <name>/<version>/metadata.json     the COMMIT object, written last and create-only
    <name>/aliases/<00000001>.json     one immutable object per alias change, numbered; created create-only
    <name>/evaluations/<n>-<id>.json   one object per recorded evaluation

- **Registration is atomic**: every object of a version is uploaded first, ``metadata.json`` last; a version
  is visible only once its metadata exists, so a registration killed at any step leaves an invisible,
  numbered prefix that ``scoring models fsck`` reports (and ``--fix`` removes once it is stale).
- **Alias history**: the local store appends to a file and fsyncs; an object store cannot append. Each change
  is instead a new object numbered one past the last, written create-only (S3 ``If-None-Match: *``): of two
  concurrent changes that read the same history, one is written and the other fails in one line, it never
  overwrites. The history is the ordered list of these objects.
- **Loading**: the artifact and its code are fetched into a local cache keyed by the artifact's sha256
  (:mod:`scoring.models.cache`), verified against the (optionally signed) metadata, then loaded exactly as a
  local version is, signature, sha256, code and pickle allow-list checks included.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from scoring.errors import ModelStoreError
from scoring.models.code import check_sources, copy_code
from scoring.models.store import ARTIFACT, METADATA, ModelStore, ModelVersion
from scoring.models.trust import sign_metadata
from scoring.sqlident import validate_identifier
from scoring.storage.checksums import sha256_file
from scoring.storage.faults import fault_point
from scoring.storage.objects import create_only, location
from scoring.storage.stagefs import StagePath

logger = logging.getLogger(__name__)

RESERVE = ".reserve"
ALIASES = "aliases"
EVALUATIONS = "evaluations"
STALE_RESERVATION_S = 3600.0  # fsck --fix removes an uncommitted version older than this (or of a dead local pid)


class ObjectModelStore(ModelStore):
    """A :class:`ModelStore` whose root is an object-store URI (``s3://bucket/prefix``)."""

    def __init__(self, root: str | StagePath) -> None:
        self.root = location(root, "model.store")

    # -- reading -------------------------------------------------------------------------------------------
    def _dir(self, name: str) -> StagePath:  # type: ignore[override]
        return self.root / validate_identifier(name, "model name")

    def _read_json(self, obj: StagePath) -> Any:
        try:
            return json.loads(obj.read_bytes())
        except json.JSONDecodeError as exc:
            raise ModelStoreError(f"model store object {str(obj)!r} is corrupted (line {exc.lineno}: {exc.msg}); "
                                  "restore it from a backup or re-register the version") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelStoreError(f"cannot read model store object {str(obj)!r}: {exc}") from None

    def _listing(self, name: str) -> dict[int, set[str]]:
        """``{version: {object names directly under it}}`` of every numbered prefix of ``name`` (one listing).

        Raises:
            ModelStoreError: unknown model (nothing under its prefix), or the store cannot be listed.
        """
        base = self._dir(name)
        try:
            infos = base.children(recursive=True)
        except OSError as exc:
            raise ModelStoreError(f"cannot list model store {str(self.root)!r}: {exc}") from None
        found: dict[int, set[str]] = {}
        for info in infos:
            rel = info.path[len(base.path) + 1:].split("/")
            if rel[0].isdigit():
                found.setdefault(int(rel[0]), set())
                if len(rel) == 2 and info.type == pafs.FileType.File:
                    found[int(rel[0])].add(rel[1])
        if not infos:
            raise ModelStoreError(f"unknown model {name!r} in store {str(self.root)!r}")
        return found

    def names(self) -> list[str]:
        try:
            infos = self.root.children()
        except OSError as exc:
            raise ModelStoreError(f"cannot list model store {str(self.root)!r}: {exc}") from None
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory
                      and not i.base_name.startswith("."))

    def _numbered(self, name: str) -> list[int]:
        """The committed versions (with their metadata object); an uncommitted one is invisible."""
        return sorted(v for v, objects in self._listing(name).items() if METADATA in objects)

    def broken(self, name: str) -> list[tuple[StagePath, str]]:  # type: ignore[override]
        """Numbered prefixes of ``name`` without their commit object (a registration in progress or killed)."""
        out = []
        for version, objects in sorted(self._listing(name).items()):
            if METADATA not in objects:
                path = self._dir(name) / str(version)
                out.append((path, f"model {name!r} version {version} is incomplete ({str(path)!r} has no "
                                  f"{METADATA}: a registration that did not finish)"))
        return out

    def get(self, name: str, version: int) -> ModelVersion:
        path = self._dir(name) / str(version)
        meta_obj = path / METADATA
        if not meta_obj.is_file():
            listing = self._listing(name)  # raises for an unknown model
            if version in listing:
                raise ModelStoreError(f"model {name!r} version {version} is incomplete ({str(path)!r} has no "
                                      f"{METADATA}: a registration in progress or interrupted); run "
                                      "`scoring models fsck` to see it")
            raise ModelStoreError(f"model {name!r} has no version {version}")
        meta = self._read_json(meta_obj)
        if not isinstance(meta, dict) or not {"sha256", "features"} <= meta.keys():
            raise ModelStoreError(f"model store object {str(meta_obj)!r} is corrupted (not a version's metadata)")
        return ModelVersion(name, version, path, meta)  # type: ignore[arg-type]

    # -- registration --------------------------------------------------------------------------------------
    def _reserve(self, base: StagePath) -> int:  # type: ignore[override]
        """Take the next version number with a create-only ``<version>/.reserve`` object."""
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                            "at": dt.datetime.now(dt.UTC).isoformat()}).encode()
        try:
            taken = self._listing(base.name)
        except ModelStoreError:
            taken = {}
        version = max(taken, default=0) + 1
        while not create_only(base / str(version) / RESERVE, owner):
            version += 1
        return version

    def register(self, name: str, artifact: Path, meta: dict[str, Any], aliases: Sequence[str] = (),
                 code: Sequence[Path] = ()) -> ModelVersion:
        """As :meth:`ModelStore.register`: every object of the version is uploaded, then its metadata (the
        commit object) create-only; a failure removes what was uploaded.

        Raises:
            ModelStoreError: a code entry is invalid, or the store cannot be written.
        """
        check_sources(code)
        base = self._dir(name)
        import sklearn

        with tempfile.TemporaryDirectory(prefix="scoring-register-") as tmp:
            build = Path(tmp)
            shutil.copyfile(artifact, build / ARTIFACT)
            code_meta = {"code": copy_code(code, build)} if code else {}
            try:
                version = self._reserve(base)
            except OSError as exc:
                raise ModelStoreError(f"cannot write model store {str(self.root)!r}: {exc}") from None
            target = base / str(version)
            try:
                fault_point("register_reserved")
                full = {"name": name, "version": version, "created_at": dt.datetime.now(dt.UTC).isoformat(),
                        "sha256": sha256_file(build / ARTIFACT), "sklearn_version": sklearn.__version__,
                        **meta, **code_meta}
                full.update(sign_metadata(full, build / ARTIFACT))
                _upload(build / ARTIFACT, target / ARTIFACT)
                for rel in (code_meta.get("code") or {}).get("files", {}):
                    _upload(build / "code" / rel, target / "code" / rel)
                fault_point("register_artifact_copied")
                body = json.dumps(full, indent=2, default=str).encode()
                if not create_only(target / METADATA, body):
                    raise ModelStoreError(f"model {name!r} version {version} was committed by another process "
                                          "while this one held its number; run `scoring models fsck`")
                fault_point("register_metadata_written")
            except OSError as exc:
                _remove_quietly(target)
                raise ModelStoreError(f"cannot write model {name!r} version {version} to {target}: {exc}") from None
            except BaseException:
                _remove_quietly(target)
                raise
        (target / RESERVE).delete_file()
        logger.debug("registered %s version %s in %s", name, version, self.root)
        for alias in aliases:
            self.set_alias(name, alias, version)
        return self.get(name, version)

    def update_meta(self, mv: ModelVersion, key: str, value: Any) -> ModelVersion:
        if key in {"name", "version", "created_at", "sha256", "sklearn_version", "features", "signature", "code"}:
            raise ModelStoreError(f"metadata entry {key!r} is set at registration and cannot be changed")
        meta = dict(self.get(mv.name, mv.version).meta)
        meta[key] = value
        (self._dir(mv.name) / str(mv.version) / METADATA).write_bytes(
            json.dumps(meta, indent=2, default=str).encode())  # one whole-object PUT
        return self.get(mv.name, mv.version)

    # -- alias history -------------------------------------------------------------------------------------
    def _entries(self, name: str, folder: str) -> list[tuple[int, StagePath]]:
        prefix = self._dir(name) / folder
        found = []
        for info in prefix.children():
            number = info.base_name.split(".")[0].split("-")[0]
            if info.type == pafs.FileType.File and number.isdigit():
                found.append((int(number), StagePath(self.root.fs, info.path)))
        return sorted(found, key=lambda e: (e[0], e[1].path))

    def history(self, name: str) -> list[dict[str, Any]]:
        """The alias changes of ``name``, oldest first: one immutable object each."""
        out = []
        for _, obj in self._entries(name, ALIASES):
            entry = self._read_json(obj)
            if not isinstance(entry, dict) or not {"alias", "version", "at"} <= entry.keys():
                raise ModelStoreError(f"alias history object {str(obj)!r} is corrupted (not an alias entry)")
            out.append(entry)
        return out

    def set_alias(self, name: str, alias: str, version: int, at: dt.datetime | None = None,
                  note: dict[str, Any] | None = None) -> None:
        """Point ``alias`` at ``version``: the next numbered history object, created create-only.

        Raises:
            ModelStoreError: unknown version; or another process changed an alias of ``name`` between this
                one's read of the history and its write (nothing is written: re-run the command).
        """
        validate_identifier(alias, "alias")
        self.get(name, version)
        entry = {"alias": alias, "version": version, "at": (at or dt.datetime.now(dt.UTC)).isoformat(),
                 **(note or {})}
        entries = self._entries(name, ALIASES)
        self.history(name)  # refuses a corrupted history before adding to it
        number = (entries[-1][0] if entries else 0) + 1
        fault_point("alias_history_read")
        obj = self._dir(name) / ALIASES / f"{number:08d}.json"
        try:
            created = create_only(obj, json.dumps(entry, default=str).encode())
        except OSError as exc:
            raise ModelStoreError(f"cannot write alias history of model {name!r}: {exc}") from None
        if not created:
            raise ModelStoreError(f"alias history of model {name!r} changed while {alias!r} -> v{version} was being "
                                  f"written (entry {number} was written by another process first); nothing was "
                                  f"changed: check `scoring models show {name}` and re-run")
        logger.info("alias %s of %s -> version %s", alias, name, version)

    def add_evaluation(self, name: str, record: dict[str, Any]) -> None:
        """Record one evaluation: a new object (unique name, so concurrent evaluations never collide)."""
        self.versions(name)
        number = len(self._entries(name, EVALUATIONS)) + 1
        obj = self._dir(name) / EVALUATIONS / f"{number:08d}-{uuid.uuid4().hex[:12]}.json"
        try:
            created = create_only(obj, json.dumps(record, default=str).encode())
        except OSError as exc:
            raise ModelStoreError(f"cannot record the evaluation of {name!r}: {exc}") from None
        if not created:
            raise ModelStoreError(f"cannot record the evaluation of {name!r}: {obj} exists")

    def evaluations(self, name: str) -> list[dict[str, Any]]:
        out = []
        for _, obj in self._entries(name, EVALUATIONS):
            try:
                out.append(json.loads(obj.read_bytes()))
            except ValueError:
                logger.warning("evaluations of %s: ignoring unreadable object %s", name, obj)
        return out

    # -- maintenance and loading ---------------------------------------------------------------------------
    def fsck(self, fix: bool = False) -> list[str]:
        """Uncommitted versions (a number reserved, no metadata object): one line each. ``fix`` removes those
        that are stale (older than an hour, or reserved by a process of this host that is gone)."""
        findings: list[str] = []
        for name in self.names():
            for path, why in self.broken(name):
                stale = _stale(path / RESERVE)
                findings.append(f"broken version: {why}" + ("" if stale else " (recent: may still be running)"))
                if fix and stale:
                    _remove_quietly(path)
        return findings

    def load(self, mv: ModelVersion) -> Any:
        """Load the version from this host's cache entry, fetching it first when there is none.

        A cached entry is hashed once, by ``ModelStore.load``'s own sha256 check before unpickling (it was
        hashed twice: by the cache's check, then by the load); an entry that does not load is discarded and
        fetched again. A fetched entry is verified before it enters the cache.

        Raises:
            ModelStoreError: as :meth:`ModelStore.load`; an object on the store whose sha256 differs from the
                metadata is refused before it is ever unpickled.
        """
        from scoring.models.cache import cached_entry, cached_version, discard_entry

        if isinstance(mv.path, Path):  # already a local (cached) copy
            return super().load(mv)
        entry = cached_entry(mv)
        if entry is not None:
            # ModelStore.load verifies the entry's sha256 before unpickling: one hash of a cached artifact.
            try:
                return super().load(entry)
            except ModelStoreError as exc:
                logger.warning("model %s v%s: the cached copy in %s does not load (%s); fetching it again",
                               mv.name, mv.version, entry.path, exc)
                discard_entry(entry)
        return super().load(cached_version(mv, self.root.fs))


def _upload(source: Path, target: StagePath) -> None:
    with source.open("rb") as fh, target.fs.open_output_stream(target.path, compression=None) as out:
        shutil.copyfileobj(fh, out, 1 << 20)


def _remove_quietly(prefix: StagePath) -> None:
    try:
        for info in prefix.children(recursive=True):
            if info.type == pafs.FileType.File:
                prefix.fs.delete_file(info.path)
        prefix.delete_tree()
    except OSError as exc:
        logger.warning("could not remove %s: %s", prefix, exc)


def _stale(reserve: StagePath) -> bool:
    """Whether an uncommitted version's reservation is abandoned: gone, older than STALE_RESERVATION_S, or
    made by a process of this host that no longer runs."""
    try:
        owner = json.loads(reserve.read_bytes())
        at = dt.datetime.fromisoformat(owner["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    if (dt.datetime.now(dt.UTC) - at).total_seconds() > STALE_RESERVATION_S:
        return True
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
    return False
