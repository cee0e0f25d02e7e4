"""A directory of versioned models: ``<store>/<name>/<version>/{model.joblib,metadata.json,code/}``.

A version is built in ``<store>/<name>/.build-<version>-<pid>/`` and renamed into place whole, its number
reserved meanwhile by ``.reserve-<version>``: a registration killed at any step leaves no numbered folder
without its metadata. A store written by an older release may hold one (a *broken* version): listings and
runs skip it and name it; ``scoring models fsck`` reports and removes what a crash left.

``code/`` (optional) holds the custom modules the pickle refers to (see :mod:`scoring.models.code`).

Aliases (e.g. ``champion``) live in ``<store>/<name>/aliases.jsonl``, an append-only history, so the
store can say which version an alias pointed at on any given day.

An object-store root (``s3://bucket/prefix``) is served by :mod:`scoring.models.remote_store` with the same
interface: a commit object per version and a create-only object per alias change instead of renames and
fsynced appends.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring.errors import ModelStoreError
from scoring.models.code import check_sources, code_on_path, copy_code, verify_code
from scoring.models.trust import UntrustedImport, restricted_load, sign_metadata, verify_signature
from scoring.sqlident import validate_identifier
from scoring.storage.checksums import sha256_file
from scoring.storage.faults import fault_point

logger = logging.getLogger(__name__)

ARTIFACT = "model.joblib"
METADATA = "metadata.json"
HISTORY = "aliases.jsonl"
EVALUATIONS = "evaluations.jsonl"
BUILD_PREFIX = ".build-"
RESERVE_PREFIX = ".reserve-"


@dataclass(frozen=True)
class ModelVersion:
    """Metadata of one registered version."""

    name: str
    version: int
    path: Path
    meta: dict[str, Any]

    @property
    def features(self) -> list[dict[str, str]]:
        return self.meta["features"]

    @property
    def artifact(self) -> Path:
        return self.path / ARTIFACT

    @property
    def code(self) -> dict[str, Any]:
        """The custom code entry, ``{"modules": [...], "files": {"code-relative path": sha256}}``, or {}."""
        return self.meta.get("code") or {}


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())  # durable before it replaces the old file
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    """A JSON file, or ModelStoreError naming the file and line."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelStoreError(f"model store file {str(path)!r} is corrupted (line {exc.lineno}: {exc.msg}); "
                              "restore it from a backup or re-register the version") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelStoreError(f"cannot read model store file {str(path)!r}: {exc}") from None


def _append_line(file: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line durably; a torn last line (an append that never completed) is cut first."""
    if file.is_file() and file.stat().st_size > 0 and not (data := file.read_bytes()).endswith(b"\n"):
        os.truncate(file, data.rfind(b"\n") + 1)
    with file.open("a") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename or new entry in ``path`` durable (POSIX: fsync the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _owner_alive(entry: Path) -> bool:
    """Whether the process that made a ``.build-N-PID`` folder or ``.reserve-N`` file is alive on this host."""
    if entry.name.startswith(BUILD_PREFIX):
        pid_text = entry.name.rsplit("-", 1)[-1]
    elif entry.name.startswith(RESERVE_PREFIX):
        try:
            pid_text = entry.read_text().strip()
        except OSError:
            return False
    else:
        pid_text = ""
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _minor(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


class ModelStore:
    """Register, list, load and promote model versions kept under one folder.

    ``ModelStore("s3://bucket/prefix")`` (an object-store URI, e.g. ``model.store`` from the config) gives an
    :class:`scoring.models.remote_store.ObjectModelStore`: the same interface and checks on an object store.
    """

    def __new__(cls, root: Path | str = Path("models")) -> ModelStore:
        if cls is ModelStore and not isinstance(root, Path):
            from scoring.storage.objects import is_uri

            if is_uri(root):
                from scoring.models.remote_store import ObjectModelStore

                return super().__new__(ObjectModelStore)
        return super().__new__(cls)

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, name: str) -> Path:
        return self.root / validate_identifier(name, "model name")

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _numbered(self, name: str) -> list[int]:
        base = self._dir(name)
        if not base.is_dir():
            raise ModelStoreError(f"unknown model {name!r} in store {str(self.root)!r}")
        return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())

    def versions(self, name: str) -> list[ModelVersion]:
        """The complete versions of ``name``, oldest first; a broken one (``broken``) is skipped with a warning.

        Raises:
            ModelStoreError: unknown model.
        """
        out = []
        for version in self._numbered(name):
            try:
                out.append(self.get(name, version))
            except ModelStoreError as exc:
                logger.warning("skipping a broken version: %s", exc)
        return out

    def broken(self, name: str) -> list[tuple[Path, str]]:
        """Numbered folders of ``name`` that are not a complete version, with why (no or unreadable metadata)."""
        found = []
        for version in self._numbered(name):
            try:
                self.get(name, version)
            except ModelStoreError as exc:
                found.append((self._dir(name) / str(version), str(exc)))
        return found

    def get(self, name: str, version: int) -> ModelVersion:
        path = self._dir(name) / str(version)
        meta_file = path / METADATA
        if not meta_file.is_file():
            if not self._dir(name).is_dir():
                raise ModelStoreError(f"unknown model {name!r} in store {str(self.root)!r}")
            if path.is_dir():
                raise ModelStoreError(f"model {name!r} version {version} is incomplete ({str(path)!r} has no "
                                      f"{METADATA}: a registration that did not finish); run "
                                      "`scoring models fsck --fix` to remove it")
            raise ModelStoreError(f"model {name!r} has no version {version}")
        meta = _read_json(meta_file)
        if not isinstance(meta, dict) or not {"sha256", "features"} <= meta.keys():
            raise ModelStoreError(f"model store file {str(meta_file)!r} is corrupted (not a version's metadata)")
        return ModelVersion(name, version, path, meta)

    def _reserve(self, base: Path) -> int:
        """Take the next version number: ``.reserve-N`` created exclusively (a concurrent register takes N+1)."""
        while True:
            taken = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
            taken += [int(p.name[len(RESERVE_PREFIX):]) for p in base.iterdir()
                      if p.name.startswith(RESERVE_PREFIX) and p.name[len(RESERVE_PREFIX):].isdigit()]
            version = max(taken, default=0) + 1
            try:
                fd = os.open(base / f"{RESERVE_PREFIX}{version}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return version

    def fsck(self, fix: bool = False) -> list[str]:
        """What a crash left in the store: broken versions, unfinished builds and reservations of processes
        that are gone, temporary files. Returns one line per finding; ``fix`` removes them (a build or
        reservation of a live process on this host is left alone)."""
        findings: list[str] = []
        for name in self.names():
            base = self._dir(name)
            for path, why in self.broken(name):
                findings.append(f"broken version: {why}")
                if fix:
                    shutil.rmtree(path, ignore_errors=True)
            for entry in sorted(base.iterdir()):
                leftover = entry.name.startswith((BUILD_PREFIX, RESERVE_PREFIX, ".tmp-"))
                if not leftover or _owner_alive(entry):
                    continue
                findings.append(f"left by an interrupted registration: {str(entry)!r}")
                if fix:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
        return findings

    def register(self, name: str, artifact: Path, meta: dict[str, Any], aliases: Sequence[str] = (),
                 code: Sequence[Path] = ()) -> ModelVersion:
        """Copy an artifact (and the custom code it needs) into the store as the next version.

        Args:
            name: model name.
            artifact: a joblib file of a fitted scikit-learn-compatible estimator.
            meta: metadata to keep (features, training window, metrics, reference, ...).
            aliases: aliases to point at the new version.
            code: ``.py`` files and package folders the pickle imports (custom transformers); copied into
                ``<version>/code/`` and recorded as ``meta["code"] = {"modules": [...], "files": {...}}``.

        Raises:
            ModelStoreError: a code entry is missing, not a ``.py`` file or package, or two share a name.
        """
        check_sources(code)  # refuse mistakes before a version number is taken
        base = self._dir(name)
        base.mkdir(parents=True, exist_ok=True)
        version = self._reserve(base)
        reservation = base / f"{RESERVE_PREFIX}{version}"
        build = base / f"{BUILD_PREFIX}{version}-{os.getpid()}"
        import sklearn  # imported on use: reading the store (reports, listings) needs no scikit-learn

        try:
            fault_point("register_reserved")
            build.mkdir()
            shutil.copyfile(artifact, build / ARTIFACT)
            fault_point("register_artifact_copied")
            code_meta = {"code": copy_code(code, build)} if code else {}
            full = {
                "name": name,
                "version": version,
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
                "sha256": sha256_file(build / ARTIFACT),
                "sklearn_version": sklearn.__version__,
                **meta,
                **code_meta,
            }
            full.update(sign_metadata(full, build / ARTIFACT))
            _atomic_write(build / METADATA, json.dumps(full, indent=2, default=str))
            _fsync_dir(build)
            fault_point("register_metadata_written")
            os.rename(build, base / str(version))  # the version appears whole, metadata included
            _fsync_dir(base)
            fault_point("register_renamed")
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        finally:
            reservation.unlink(missing_ok=True)
        logger.debug("registered %s version %s", name, version)  # the CLI prints it with more
        for alias in aliases:
            self.set_alias(name, alias, version)
        return self.get(name, version)

    def update_meta(self, mv: ModelVersion, key: str, value: Any) -> ModelVersion:
        """Set one metadata entry of a registered version (e.g. ``compiled``), atomically; returns it re-read.

        Raises:
            ModelStoreError: ``key`` is one registration owns (name, version, sha256, features, signature).
        """
        if key in {"name", "version", "created_at", "sha256", "sklearn_version", "features", "signature", "code"}:
            raise ModelStoreError(f"metadata entry {key!r} is set at registration and cannot be changed")
        meta = dict(self.get(mv.name, mv.version).meta)
        meta[key] = value
        _atomic_write(mv.path / METADATA, json.dumps(meta, indent=2, default=str))
        return self.get(mv.name, mv.version)

    def history(self, name: str) -> list[dict[str, Any]]:
        file = self._dir(name) / HISTORY
        if not file.is_file():
            return []
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelStoreError(f"cannot read alias history {str(file)!r}: {exc}") from None
        lines = text.split("\n")
        out = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not {"alias", "version", "at"} <= entry.keys():
                    raise ValueError("not an alias entry")
            except ValueError as exc:
                if number == len(lines) and not text.endswith("\n"):
                    # A torn last line: an append that never completed (never acknowledged), so never in force.
                    logger.warning("alias history %s: ignoring a torn last line %s", file, number)
                    continue
                raise ModelStoreError(f"alias history {str(file)!r} line {number} is corrupted ({exc}); "
                                      "fix or remove that line") from None
            out.append(entry)
        return out

    def set_alias(self, name: str, alias: str, version: int, at: dt.datetime | None = None,
                  note: dict[str, Any] | None = None) -> None:
        """Point ``alias`` at ``version`` and append the change to the alias history.

        ``note`` (e.g. the promotion gate's outcome, or a forced promotion's user and reason) is kept in the
        history entry."""
        validate_identifier(alias, "alias")
        self.get(name, version)
        entry = {"alias": alias, "version": version, "at": (at or dt.datetime.now(dt.UTC)).isoformat(),
                 **(note or {})}
        self.history(name)  # refuses a corrupted history before appending to it
        _append_line(self._dir(name) / HISTORY, entry)
        logger.info("alias %s of %s -> version %s", alias, name, version)

    def add_evaluation(self, name: str, record: dict[str, Any]) -> None:
        """Append one evaluation (``scoring models evaluate``) to the model's append-only evaluations log."""
        self.versions(name)  # raises for an unknown model
        _append_line(self._dir(name) / EVALUATIONS, record)

    def evaluations(self, name: str) -> list[dict[str, Any]]:
        """Every evaluation recorded for ``name``, oldest first (a torn last line is ignored)."""
        file = self._dir(name) / EVALUATIONS
        if not file.is_file():
            return []
        out = []
        for line in file.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                logger.warning("evaluations log %s: ignoring an unreadable line", file)
        return out

    def aliases(self, name: str) -> dict[str, int]:
        current: dict[str, int] = {}
        for entry in self.history(name):
            current[entry["alias"]] = entry["version"]
        return current

    def resolve(self, name: str, alias: str | None = None, version: int | None = None) -> ModelVersion:
        """The pinned ``version`` if given, else the version ``alias`` points at now."""
        if version is not None:
            return self.get(name, version)
        self.versions(name)  # raises for an unknown model
        target = self.aliases(name).get(alias or "champion")
        if target is None:
            raise ModelStoreError(f"model {name!r} has no alias {alias!r}; promote a version first")
        return self.get(name, target)

    def alias_at(self, name: str, alias: str, when: dt.datetime) -> int | None:
        """The version ``alias`` pointed at, at time ``when`` (None if it did not exist yet)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        found = None
        for entry in self.history(name):
            if entry["alias"] == alias and dt.datetime.fromisoformat(entry["at"]) <= when:
                found = entry["version"]
        return found

    def load(self, mv: ModelVersion) -> Any:
        """Unpickle a version after verifying its checksums and scikit-learn version.

        The version's custom code (``code/``) is verified file by file and imported from the store, so the
        model loads without PYTHONPATH, here as in spawned workers and Airflow tasks.

        Raises:
            ModelStoreError: the artifact is missing or modified, a custom code file changed, went missing or
                was added, the scikit-learn minor version differs, or unpickling fails.
        """
        if not mv.artifact.is_file():
            raise ModelStoreError(f"model {mv.name} v{mv.version}: artifact {str(mv.artifact)!r} is missing")
        verify_signature(mv.meta, f"model {mv.name} v{mv.version}")
        actual = sha256_file(mv.artifact)
        if actual != mv.meta["sha256"]:
            raise ModelStoreError(
                f"model {mv.name} v{mv.version}: artifact checksum mismatch (expected {mv.meta['sha256'][:12]}..., "
                f"found {actual[:12]}...); refusing to unpickle a modified file"
            )
        import sklearn

        saved = mv.meta.get("sklearn_version", "")
        if _minor(saved) != _minor(sklearn.__version__):
            raise ModelStoreError(
                f"model {mv.name} v{mv.version} was saved with scikit-learn {saved}, this environment has "
                f"{sklearn.__version__}; pickles are not portable across minor versions: install "
                f"scikit-learn=={saved} or re-train and register"
            )
        label = f"model {mv.name} v{mv.version}"
        verify_code(mv.path, mv.code, label)
        try:
            with code_on_path(mv.path):
                return restricted_load(mv.artifact, mv.code.get("modules") or [], mv.meta.get("trusted_imports") or [])
        except UntrustedImport as exc:
            raise ModelStoreError(f"{label}: {exc}; refusing to load it (was the artifact or its metadata replaced "
                                  "after registration?)") from None
        except ModelStoreError as exc:  # the custom code fails to import
            raise ModelStoreError(f"{label}: {exc}") from exc
        except Exception as exc:
            raise ModelStoreError(f"model {mv.name} v{mv.version}: cannot load artifact: {exc}") from exc


def load_version(store_root: Path, name: str, version: int) -> Any:
    """Load version ``version`` of model ``name`` from the store at ``store_root`` (verified, as ``ModelStore.load``).

    A module-level function, so ``functools.partial(load_version, ...)`` pickles into spawned worker processes.
    """
    store = ModelStore(store_root)
    return store.load(store.get(name, version))
