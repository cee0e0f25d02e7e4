"""An artifact is code: what the store lets a pickle import, and the optional signature of a version.

**Import allow-list.** A pickle calls whatever its ``GLOBAL`` opcodes name; unpickling an artifact from an
untrusted hand runs its code. Every artifact is therefore loaded through joblib's own unpickler with
``find_class`` restricted (the method the Python documentation gives for this, "Restricting Globals",
https://docs.python.org/3/library/pickle.html#restricting-globals): a global is resolved only when it is a
class of scikit-learn, NumPy, SciPy, pandas, XGBoost or LightGBM (never ``numpy.memmap`` or another file
opener), one of NumPy's array reconstructors or ufuncs, or comes from the version's own ``--code`` modules.
Anything else is refused *before it can be called*, naming it, unless it was accepted at registration with
``--trust`` (kept in the version's metadata as ``trusted_imports``). Why not ``picklescan``/``fickling``: they
parse the opcode stream and stop at the first NumPy array that joblib writes inline after its
``NumpyArrayWrapper`` (picklescan reports ``scan_err`` and misses every import after it), so a call hidden
after the first array goes unseen; the restricted unpickler sees every import because it is the loader.

**Signature.** With ``SCORING_MODEL_KEY`` set (a secret held outside the store), registration adds an
HMAC-SHA256 over the version's metadata (which holds the artifact's and code files' sha256), and loading
refuses a version whose metadata, and so artifact, was edited or whose signature is missing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scoring.errors import ModelStoreError

logger = logging.getLogger(__name__)

KEY_ENV = "SCORING_MODEL_KEY"
SIGNATURE = "hmac_sha256"
TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy", "pandas", "xgboost", "lightgbm", "collections", "datetime",
                    "decimal", "uuid", "zoneinfo", "pytz", "dateutil", "category_encoders", "features")
# Callables (not classes) that pickles of these packages use to rebuild their objects.
TRUSTED_CALLABLES = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("copyreg", "_reconstructor"), ("_codecs", "encode"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"), ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.internals.blocks", "new_block"), ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
    ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"), ("pandas.core.indexes.base", "_new_Index"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    ("builtins", "bytearray"), ("builtins", "object"), ("builtins", "range"), ("builtins", "float"),
    ("builtins", "int"), ("builtins", "bool"), ("builtins", "str"), ("builtins", "bytes"), ("builtins", "tuple"),
    ("builtins", "list"), ("builtins", "dict"),
    # partial(f, ...) only binds arguments; f itself is checked like any other global.
    ("functools", "partial"),
})
# Modules whose plain functions a model may hold (FunctionTransformer(check_array), partial(check_array, ...)):
# input validators with no file, network or process access.
TRUSTED_FUNCTION_MODULES = frozenset({"sklearn.utils.validation"})
DENIED = frozenset({("numpy", "memmap"), ("numpy.core.memmap", "memmap"), ("numpy._core.memmap", "memmap")})
_LOCK = threading.Lock()


def _trusted(module: str, name: str, obj: Any) -> bool:
    if (module, name) in DENIED:
        return False
    if (module, name) in TRUSTED_CALLABLES:
        return True
    if module.split(".")[0] not in TRUSTED_PACKAGES:
        return False
    import numpy as np

    # Cython classes pickle through a generated ``__pyx_unpickle_<Class>`` that only rebuilds that class.
    return isinstance(obj, type | np.ufunc) or name.startswith("__pyx_unpickle_") \
        or (module in TRUSTED_FUNCTION_MODULES and callable(obj))


def restricted_load(artifact: Path, code_modules: Iterable[str] = (), trusted_imports: Iterable[str] = ()) -> Any:
    """Load a joblib artifact with every import checked before use (see the module docstring).

    Args:
        artifact: the joblib file.
        code_modules: top-level module names of the version's ``--code`` (their globals are the registrant's).
        trusted_imports: ``module.name`` globals accepted with ``--trust``.

    Raises:
        ModelStoreError: a global outside the allow-list (named), or a file joblib cannot read.
    """
    import importlib

    from joblib import numpy_pickle

    own = {m.split(".")[0] for m in code_modules}
    accepted = set(trusted_imports)

    class Restricted(numpy_pickle.NumpyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            qualified = f"{module}.{name}"
            if module.split(".")[0] in own or qualified in accepted:
                return super().find_class(module, name)
            if module.split(".")[0] not in TRUSTED_PACKAGES and (module, name) not in TRUSTED_CALLABLES:
                raise UntrustedImport(qualified)
            try:
                obj = getattr(importlib.import_module(module), name.split(".")[0])
                for part in name.split(".")[1:]:
                    obj = getattr(obj, part)
            except (ImportError, AttributeError):
                return super().find_class(module, name)  # let pickle raise its own error
            if not _trusted(module, name, obj):
                raise UntrustedImport(qualified)
            return obj

    with _LOCK, artifact.open("rb") as handle, \
            numpy_pickle._validate_fileobject_and_memmap(handle, str(artifact), None) as (fobj, _):
        if isinstance(fobj, str):
            raise ModelStoreError(f"{str(artifact)!r} was written by joblib < 0.10; re-save it with a current joblib")
        return Restricted(str(artifact), fobj, True).load()


class UntrustedImport(ModelStoreError):
    """A pickle names a global outside the allow-list (``qualified`` is ``module.name``)."""

    def __init__(self, qualified: str) -> None:
        super().__init__(f"the pickle imports {qualified!r}, which is not on the allow-list of model classes")
        self.qualified = qualified


def list_untrusted(artifact: Path, code_modules: Iterable[str] = ()) -> list[str]:
    """Every global of ``artifact`` outside the allow-list (loading stops at each; each is accepted in turn to
    find the next). Used by ``--trust`` to record exactly what was accepted. Loads the artifact: call it only
    after the registrant said they trust it."""
    found: list[str] = []
    for _ in range(50):
        try:
            restricted_load(artifact, code_modules, found)
            return found
        except UntrustedImport as exc:
            found.append(exc.qualified)
    return found


def _key() -> bytes | None:
    value = os.environ.get(KEY_ENV)
    return value.encode() if value else None


def _digest(meta: dict[str, Any], key: bytes) -> str:
    body = {k: v for k, v in meta.items() if k != SIGNATURE}
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sign_metadata(meta: dict[str, Any], artifact: Path) -> dict[str, Any]:
    """``{"hmac_sha256": ...}`` over ``meta`` (which holds the artifact's sha256) when ``SCORING_MODEL_KEY``
    is set, else {}. ``artifact`` is checked to match the sha256 being signed."""
    key = _key()
    if key is None:
        return {}
    from scoring.storage.checksums import sha256_file

    if sha256_file(artifact) != meta.get("sha256"):
        raise ModelStoreError(f"{str(artifact)!r} changed while it was being registered")
    return {SIGNATURE: _digest(meta, key)}


def updated_metadata(meta: dict[str, Any], changes: dict[str, Any], label: str) -> dict[str, Any]:
    """``meta`` (as read from the store) with ``changes`` applied, re-signed when ``SCORING_MODEL_KEY`` is
    set (e.g. ``models compile`` adding its ``compiled`` entry); a plain merged copy otherwise.

    The metadata as read is verified first (``verify_signature``): a change never launders an edited
    artifact hash into a fresh signature.

    Raises:
        ModelStoreError: the key is set and the metadata as read is unsigned or its signature does not match.
    """
    verify_signature(meta, label)
    out = {**meta, **changes}
    key = _key()
    if key is not None:
        out[SIGNATURE] = _digest(out, key)
    return out


def verify_signature(meta: dict[str, Any], label: str) -> None:
    """Refuse a version whose metadata does not carry a valid signature, when ``SCORING_MODEL_KEY`` is set.

    Raises:
        ModelStoreError: unsigned, or the signature does not match (the metadata or artifact hash was edited).
    """
    key = _key()
    if key is None:
        return
    signature = meta.get(SIGNATURE)
    if not signature:
        raise ModelStoreError(f"{label} is not signed, and {KEY_ENV} is set: re-register it with the key set")
    if not hmac.compare_digest(str(signature), _digest(meta, key)):
        raise ModelStoreError(f"{label}: the metadata's signature does not match ({KEY_ENV}); its metadata or "
                              "artifact hash was edited after registration; refusing to load it")
