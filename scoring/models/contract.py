"""The declared model signature: task, classes, positive class and the inputs the model consumes.

Written into a version's metadata (``signature``) at registration and read back by every run, so the
model receives, at scoring time, the columns it was trained on: in its own order, with the pandas dtype
it was fitted with, missing values spelled the way training spelled them (see ``scoring.models.convert``).

An input is ``{"name", "kind", "dtype", "levels", "missing", "nullable", "unknown_levels"}``:

- ``kind``: numeric | boolean | categorical | text | datetime (what the column means);
- ``dtype``: the pandas dtype string of the training frame's column (``float64``, ``Int64``, ``boolean``,
  ``category``, ``str``, ``object``, ``datetime64[us]`` ...), or ``arrow`` for versions registered before
  signatures existed (the Arrow table's own ``to_pandas()``, what those versions were scored with);
- ``levels``: the levels the model knows: the category levels in training order (dtype ``category``), or
  the categories of an encoder that refuses unknown levels; else None;
- ``missing``: how training spelled a missing value in an ``object`` column: ``nan``, ``none`` or ``na``;
- ``nullable``: whether the model accepts a missing value there (it had missing values in training, an
  imputer covers the column, or the estimator handles NaN natively);
- ``nullable_why``: why missing is acceptable (training had missing values, an imputer, a NaN-native estimator);
- ``unknown_levels``: ``error`` when an encoder of the model raises on a level it did not see in training
  (the generated suite then quarantines such rows before scoring), else ``ignore``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scoring.errors import ModelStoreError

TASKS = ("binary", "multiclass", "regression")
KINDS = ("numeric", "boolean", "categorical", "text", "datetime")


@dataclass(frozen=True)
class Input:
    """One model input column (see the module docstring for the fields)."""

    name: str
    kind: str
    dtype: str
    levels: tuple[Any, ...] | None = None
    missing: str = "nan"
    nullable: bool = True
    unknown_levels: str = "ignore"
    nullable_why: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["levels"] = list(self.levels) if self.levels is not None else None
        return out


@dataclass(frozen=True)
class Contract:
    """What a model consumes and produces; picklable, so it travels to worker processes.

    Attributes:
        task: binary, multiclass or regression.
        inputs: the model's inputs in the order it consumes them.
        classes: the classifier's ``classes_`` as JSON values (empty for regression).
        positive_class: binary only: the class whose probability is the published ``score``.
        feature_names: whether the model was fitted with column names (``feature_names_in_``); a model
            without them receives a frame in ``inputs`` order all the same.
    """

    task: str
    inputs: tuple[Input, ...]
    classes: tuple[Any, ...] = ()
    positive_class: Any = None
    feature_names: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def positive_index(self) -> int:
        """Column of ``predict_proba`` holding the positive class (binary only)."""
        return list(self.classes).index(self.positive_class)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "classes": list(self.classes), "positive_class": self.positive_class,
                "feature_names": self.feature_names, "inputs": [i.to_json() for i in self.inputs],
                **self.extra}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Contract:
        inputs = tuple(Input(**{**i, "levels": tuple(i["levels"]) if i.get("levels") is not None else None})
                       for i in raw["inputs"])
        known = {"task", "classes", "positive_class", "feature_names", "inputs"}
        return cls(raw["task"], inputs, tuple(raw.get("classes") or ()), raw.get("positive_class"),
                   bool(raw.get("feature_names", True)), {k: v for k, v in raw.items() if k not in known})


KIND_OF_LOGICAL = {"integer": "numeric", "float": "numeric", "boolean": "boolean", "string": "text",
                   "timestamp": "datetime", "date": "datetime", "null": "numeric"}


def legacy_contract(meta: dict[str, Any]) -> Contract:
    """The contract of a version registered before signatures: a binary classifier scored on the positive
    (last) class, fed the Arrow table's own ``to_pandas()`` columns: exactly how such versions were scored."""
    classes = tuple(meta.get("classes") or (0, 1))
    inputs = tuple(Input(f["name"], KIND_OF_LOGICAL.get(f["type"], "text"), "arrow") for f in meta["features"])
    return Contract("binary", inputs, classes, classes[-1] if classes else 1)


def contract_of(meta: dict[str, Any]) -> Contract:
    """The contract stored in a version's metadata (``signature``), or the legacy one."""
    raw = meta.get("signature")
    if raw is None:
        return legacy_contract(meta)
    return Contract.from_json(raw)


def json_value(value: Any) -> Any:
    """A class label as a plain JSON value (numpy scalars unwrapped)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def choose_positive(classes: list[Any], given: str | None, model_name: str) -> Any:
    """The positive class of a binary model: ``given`` (matched on its text), else 1 or True.

    Raises:
        ModelStoreError: classes are not 0/1 or False/True and no positive class was given, or the given
            one is not among the classes.
    """
    if given is not None:
        for c in classes:
            if str(c) == str(given) or (isinstance(c, bool) and str(c).lower() == str(given).lower()):
                return c
        raise ModelStoreError(f"model {model_name}: --positive-class {given!r} is not one of its classes "
                              f"{[str(c) for c in classes]}")
    as_set = set(map(str, classes))
    if as_set in ({"0", "1"}, {"False", "True"}):
        return classes[1]
    raise ModelStoreError(f"model {model_name}: classes {[str(c) for c in classes]} are not 0/1 or False/True; "
                          "say which one is the event of interest with --positive-class")
