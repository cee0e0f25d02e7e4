"""The model's input signature: logical column types and the feature schema of training rows.

A feature schema is a list of ``{"name": str, "type": str}`` in the model's input order, where ``type`` is
one of the logical types below (integer, float, boolean, string, timestamp, date, null). It is stored in
the model version's metadata at registration and checked against the source before every run
(``scoring.quality.schema_check``).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

NUMERIC = ("integer", "float")


def logical_type(t: pa.DataType) -> str:
    """Map an Arrow type to the schema's logical type names."""
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_dictionary(t):
        return logical_type(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
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
