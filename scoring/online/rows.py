"""JSON rows of a request or a stream event -> an Arrow table typed by the model's feature schema.

Each model input must be present in every row (``null`` is a value: the gate decides whether the model may
receive it) and have the JSON type of its logical type: integer (a JSON integer, or a float with no
fraction), float (any JSON number), boolean (``true``/``false`` only), string (a JSON string only: ``7`` is
refused where ``"007"`` is expected, because that is exactly how a leading zero is lost), timestamp and date
(ISO 8601 text). A row breaking that raises ``RowError`` naming the row, the field and the value. Other
fields are ignored, as a batch source's extra columns are (``scoring.quality.schema_check``); the key column
is kept as text when present.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

ROW_COLUMN = "__row"  # the position of a row in its micro-batch: the key the gate and scorer carry
ARROW_TYPES = {"integer": pa.int64(), "float": pa.float64(), "boolean": pa.bool_(), "string": pa.string(),
               "timestamp": pa.timestamp("us"), "date": pa.date32(), "null": pa.float64()}


@dataclass(frozen=True)
class RowError(Exception):
    """A row that does not fit the signature: where, which field, which value, what was expected."""

    row: int
    field: str
    value: Any
    error: str

    def __str__(self) -> str:
        return f"row {self.row}: field {self.field!r} = {_shown(self.value)}: {self.error}"

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "value": _shown(self.value), "error": self.error}


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if value is not _MISSING else "<missing>"
    return text if len(text) <= 80 else text[:77] + "..."


_MISSING = object()


def _check(value: Any, logical: str) -> tuple[Any, str | None]:
    """The value to put in the Arrow column, or an error message."""
    if value is None:
        return None, None
    if logical == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, None) if -2**63 <= value < 2**63 else (None, "integer out of the 64-bit range")
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value), None
        return None, "expected an integer"
    if logical in ("float", "null"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), None
        return None, "expected a number"
    if logical == "boolean":
        return (value, None) if isinstance(value, bool) else (None, "expected true or false")
    if logical == "string":
        return (value, None) if isinstance(value, str) else (None, "expected a string (JSON text, in quotes)")
    if logical in ("timestamp", "date"):
        if not isinstance(value, str):
            return None, f"expected an ISO 8601 {logical} string"
        try:
            stamp = dt.datetime.fromisoformat(value)
        except ValueError:
            return None, f"expected an ISO 8601 {logical} string"
        if logical == "date":
            return stamp.date(), None
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
        return stamp, None
    return None, f"unsupported logical type {logical}"


def to_table(rows: list[Any], features: list[dict[str, str]], key_column: str | None = None,
             first_row: int = 0) -> pa.Table:
    """The Arrow table of ``rows`` (JSON objects), one column per feature in signature order.

    Args:
        rows: decoded JSON values, each expected to be an object.
        features: the model's feature schema (``[{"name", "type"}]``, logical types).
        key_column: kept (as text) when a row carries it; other extra fields are ignored.
        first_row: the position of ``rows[0]`` in the request (for error messages).

    Returns:
        A table with ``ROW_COLUMN`` (int64 positions from 0), the key column when given, then the features.

    Raises:
        RowError: the first row that is not an object, lacks an input, or has a value of the wrong type.
    """
    columns: dict[str, list[Any]] = {f["name"]: [] for f in features}
    keys: list[Any] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RowError(first_row + i, "", row, "expected a JSON object of field: value")
        for feat in features:
            name = feat["name"]
            value = row.get(name, _MISSING)
            if value is _MISSING:
                raise RowError(first_row + i, name, _MISSING, f"missing input (type {feat['type']})")
            converted, error = _check(value, feat["type"])
            if error:
                raise RowError(first_row + i, name, value, error)
            columns[name].append(converted)
        if key_column is not None:
            key = row.get(key_column)
            keys.append(None if key is None else str(key))
    arrays: dict[str, pa.Array] = {ROW_COLUMN: pa.array(range(len(rows)), pa.int64())}
    if key_column is not None and key_column not in columns:
        arrays[key_column] = pa.array(keys, pa.string())
    for feat in features:
        arrays[feat["name"]] = pa.array(columns[feat["name"]], ARROW_TYPES.get(feat["type"], pa.string()))
    return pa.table(arrays)
