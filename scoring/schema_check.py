"""Feature schema: logical column types, and the check of a source schema against a model's."""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa

from scoring.errors import SchemaError

logger = logging.getLogger(__name__)

NUMERIC = ("integer", "float")


def logical_type(t: pa.DataType) -> str:
    """Map an Arrow type to the schema's logical type names."""
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_null(t):
        return "null"
    return str(t)


def features_from_frame(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, str]]:
    """The feature schema (name and logical type) of ``columns`` of a training frame."""
    schema = pa.Schema.from_pandas(frame[columns], preserve_index=False)
    return [{"name": f.name, "type": logical_type(f.type)} for f in schema]


def compatible(expected: str, found: str) -> bool:
    """Whether a column of type ``found`` can be fed where ``expected`` was trained, without loss."""
    if expected == found or found == "null":
        return True
    return expected in NUMERIC and found in NUMERIC


def check_schema(source: pa.Schema, features: list[dict[str, str]], key_column: str) -> list[str]:
    """Check the source columns against the model's features.

    Returns the columns to read (key first, then features). Raises SchemaError naming the first
    missing or retyped column; extra columns are logged and ignored.
    """
    if key_column not in source.names:
        raise SchemaError(f"key column {key_column!r} is missing from the source")
    found = {f.name: logical_type(f.type) for f in source}
    for feat in features:
        name, expected = feat["name"], feat["type"]
        if name not in found:
            raise SchemaError(f"required column {name!r} (type {expected}) is missing from the source")
        if not compatible(expected, found[name]):
            raise SchemaError(f"column {name!r} has type {found[name]}, the model expects {expected}")
    wanted = {key_column, *(f["name"] for f in features)}
    extra = [n for n in source.names if n not in wanted]
    if extra:
        logger.info("ignoring %d source columns not used by the model: %s", len(extra), ", ".join(extra))
    return [key_column, *(f["name"] for f in features if f["name"] != key_column)]
