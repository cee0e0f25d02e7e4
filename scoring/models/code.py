"""Custom code shipped with a model version: ``<version>/code/`` holds the user's modules and packages.

A pickled Pipeline refers to its custom transformers by module and class name (``mytransforms.Winsorizer``),
so unpickling needs that module importable. The store keeps a copy of the module next to the artifact,
records each file's sha256, and imports it from there when loading: no PYTHONPATH, and an edit of the
user's original after registration cannot change the scores of a registered version.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.metadata
import logging
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scoring.errors import ModelStoreError
from scoring.storage.checksums import sha256_file

logger = logging.getLogger(__name__)

CODE_DIR = "code"
_PROJECT = ("scoring", "features", "sample_data")
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}
# Anything the import system could pick up from code/ (sources, bytecode, extension modules).
_IMPORTABLE = set(importlib.machinery.all_suffixes())


@functools.cache
def _installed() -> dict[str, list[str]]:
    """Top-level module names of the installed distributions (scikit-learn, this project, ...)."""
    found = dict(importlib.metadata.packages_distributions())
    # An editable install lists no top-level names: name this project's packages explicitly.
    for name in _PROJECT:
        found.setdefault(name, ["batch-scoring"])
    return found


def _module_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def check_sources(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """Validate the user's code entries before anything is copied.

    Args:
        paths: ``.py`` files and package folders (folders with an ``__init__.py``).

    Returns:
        ``[(top-level module name, absolute path), ...]`` in the given order.

    Raises:
        ModelStoreError: a path is missing, a file is not ``.py``, a folder is not a package, a name is not
            importable or shadows a standard-library or installed module, or two entries give the same module name.
    """
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise ModelStoreError(f"custom code {str(raw)!r} not found")
        if path.is_file() and path.suffix != ".py":
            raise ModelStoreError(f"custom code {str(raw)!r} is not a .py file or a package folder")
        if path.is_dir() and not (path / "__init__.py").is_file():
            raise ModelStoreError(f"custom code folder {str(raw)!r} is not a package (it has no __init__.py)")
        name = _module_name(path)
        if not name.isidentifier():
            raise ModelStoreError(f"custom code {str(raw)!r}: {name!r} is not an importable module name")
        if name in sys.stdlib_module_names:
            raise ModelStoreError(f"custom code {str(raw)!r} would shadow the standard-library module {name!r}")
        if name in _installed():
            raise ModelStoreError(f"custom code {str(raw)!r} would shadow the installed module {name!r} "
                                  f"(from {', '.join(_installed()[name])}); rename it")
        if name in found:
            raise ModelStoreError(f"custom code {str(raw)!r} and {str(found[name])!r} are both module {name!r}")
        found[name] = path
    return list(found.items())


def _files(root: Path) -> Iterator[Path]:
    """Files under ``root`` (recursively), without ``__pycache__`` folders and bytecode."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIPPED_DIRS for part in rel.parts) or path.suffix in _SKIPPED_SUFFIXES:
            continue
        if path.is_file():
            yield path


def copy_code(paths: Sequence[Path], version_dir: Path) -> dict[str, Any]:
    """Copy the user's code entries into ``<version_dir>/code/`` and describe what was copied.

    Args:
        paths: ``.py`` files and package folders, checked with :func:`check_sources`.
        version_dir: the new version's folder.

    Returns:
        The metadata entry ``{"modules": [top-level names], "files": {"mypkg/sub.py": sha256, ...}}``
        (paths relative to ``code/``, with ``/``), computed on the copies.

    Raises:
        ModelStoreError: as :func:`check_sources`.
    """
    entries = check_sources(paths)
    target = version_dir / CODE_DIR
    target.mkdir()
    for name, source in entries:
        if source.is_file():
            shutil.copyfile(source, target / source.name)
        else:
            shutil.copytree(source, target / name,
                            ignore=shutil.ignore_patterns(*_SKIPPED_DIRS, *(f"*{s}" for s in _SKIPPED_SUFFIXES)))
    files = {p.relative_to(target).as_posix(): sha256_file(p) for p in _files(target)}
    logger.info("copied custom code %s (%s files) into %s", [n for n, _ in entries], len(files), target)
    return {"modules": [n for n, _ in entries], "files": files}


def verify_code(version_dir: Path, recorded: dict[str, Any], label: str) -> None:
    """Check ``<version_dir>/code/`` against the metadata entry written at registration.

    Args:
        version_dir: the version's folder.
        recorded: its ``code`` metadata entry (may be empty: then code/ must hold nothing importable).
        label: how errors name the version, e.g. ``model loan v3``.

    Raises:
        ModelStoreError: a recorded file is missing or its sha256 differs, or an importable file
            (``.py``, extension module, bytecode outside ``__pycache__``) was added.
    """
    root = version_dir / CODE_DIR
    files: dict[str, str] = (recorded or {}).get("files", {})
    for rel, expected in files.items():
        path = root / rel
        if not path.is_file():
            raise ModelStoreError(f"{label}: custom code file '{CODE_DIR}/{rel}' is missing; register a new version")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelStoreError(
                f"{label}: custom code file '{CODE_DIR}/{rel}' changed since registration "
                f"(sha256 {expected[:12]}... -> {actual[:12]}...); register a new version"
            )
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIPPED_DIRS for part in rel.parts) or not path.is_file():
            continue
        importable = any(path.name.endswith(s) for s in _IMPORTABLE | _SKIPPED_SUFFIXES)
        if importable and rel.as_posix() not in files:
            raise ModelStoreError(
                f"{label}: custom code file '{CODE_DIR}/{rel.as_posix()}' was added after registration; "
                "register a new version"
            )


def _entries(where: Path | Sequence[Path]) -> list[tuple[str, Path]]:
    """``[(module name, path)]`` of a version folder's ``code/`` or of the user's code entries."""
    if isinstance(where, (str, Path)):
        if Path(where).is_file() or (Path(where) / "__init__.py").is_file():
            return check_sources([Path(where)])  # one user entry, not a version folder
        root = Path(where) / CODE_DIR
        if not root.is_dir():
            return []
        return [(_module_name(p), p.resolve()) for p in sorted(root.iterdir())
                if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").is_file())]
    return check_sources(where)


def _loaded_from(module: Any, path: Path) -> bool:
    """Whether ``module`` is the file ``path`` (a ``.py`` file, or a package folder's ``__init__.py``)."""
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve() in (path, path / "__init__.py")


def _purge(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@contextmanager
def code_on_path(where: Path | Sequence[Path]) -> Iterator[list[str]]:
    """Make custom code importable, from exactly these files, for the duration of the block.

    Puts the code's folder(s) first on ``sys.path`` and imports every top-level module from there; a
    module of the same name imported earlier from elsewhere (the user's working copy, another version's
    ``code/``) is dropped from ``sys.modules`` first, with its submodules. On exit ``sys.path`` is restored
    but the modules stay imported: objects unpickled in the block need their classes afterwards.

    Args:
        where: a version folder (its ``code/`` subfolder is used; none: nothing to do), or the user's code
            entries before registration, ``.py`` files and package folders whose parent folders go on
            ``sys.path``, e.g. ``[Path("mytransforms.py")]`` (a single such Path is taken as one entry).

    Yields:
        The top-level module names imported.

    Raises:
        ModelStoreError: an entry is invalid (see :func:`check_sources`) or a module fails to import.
    """
    entries = _entries(where)
    folders = list(dict.fromkeys(path.parent for _, path in entries))
    added = [str(f) for f in folders]
    for folder in reversed(added):
        sys.path.insert(0, folder)
    try:
        importlib.invalidate_caches()  # the folder may be new, or written within the finder's mtime tick
        for name, path in entries:
            module = sys.modules.get(name)
            if module is not None and not _loaded_from(module, path):
                logger.debug("custom code %s: dropping %s imported from elsewhere", name,
                             getattr(module, "__file__", None))
                _purge(name)
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                raise ModelStoreError(f"custom code module {name!r} from {str(path)!r} fails to import: "
                                      f"{type(exc).__name__}: {exc}") from exc
            if not _loaded_from(module, path):
                raise ModelStoreError(f"custom code module {name!r} was imported from "
                                      f"{getattr(module, '__file__', None)!r}, not from {str(path)!r}")
        yield [name for name, _ in entries]
    finally:
        for folder in added:
            try:
                sys.path.remove(folder)
            except ValueError:
                pass


_WALK_LIMIT = 200_000  # objects visited per model (a Pipeline has hundreds; arrays are not entered)


def _module_of(obj: Any) -> str | None:
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        return getattr(obj, "__module__", None)
    return getattr(type(obj), "__module__", None)


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict):
        yield from obj.keys()
        yield from obj.values()
    elif isinstance(obj, list | tuple | set | frozenset):
        yield from obj
    elif isinstance(obj, functools.partial):
        yield obj.func
        yield from obj.args
        yield from obj.keywords.values()
    if isinstance(obj, type):
        return
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict) and not callable(obj):
        yield from state.values()


def modules_outside(model: Any, given: Sequence[str] = ()) -> dict[str, str]:
    """The top-level modules the model's objects (estimators, their attributes, functions they hold) come
    from that are neither the standard library, nor an installed distribution's, nor in ``given``.

    Returns:
        ``{module: file it was imported from}``: each must be passed with ``--code`` (README "Custom code"),
        else an edit of that file would change a registered version's scores.
    """
    import numpy as np

    allowed = {*sys.stdlib_module_names, "builtins", "__main__", *_installed(), *given}
    found: dict[str, str] = {}
    seen: set[int] = set()
    stack = [model]
    while stack and len(seen) < _WALK_LIMIT:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | bool | np.ndarray | np.generic) \
                or obj is None:
            continue
        seen.add(id(obj))
        module = _module_of(obj)
        if module:
            top = module.split(".")[0]
            if top not in allowed and top not in found:
                loaded = sys.modules.get(top)
                found[top] = str(getattr(loaded, "__file__", None) or "?")
        if module and module.split(".")[0] in ("pandas", "numpy", "scipy"):
            continue  # data containers of installed libraries: nothing of the user's inside
        stack.extend(_children(obj))
    return found
