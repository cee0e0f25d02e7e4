"""Arrow rows as a source delivers them -> the pandas frame the model was trained on.

Each input column is converted from whatever Arrow type the source gives (dictionary or plain strings,
booleans with nulls, integers with nulls, decimals, timestamps) to the pandas dtype recorded in the model's
signature, in the signature's order: a NULL becomes the missing value training used (``NaN``, ``None``,
``<NA>``), categories get the training levels in training order (what scikit-learn's HistGradientBoosting
``categorical_features="from_dtype"``, XGBoost ``enable_categorical`` and LightGBM read as codes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.models.contract import Input

MISSING = {"nan": np.nan, "none": None, "na": pd.NA}
_NULLABLE_NUMPY_FALLBACK = "float64"  # a non-nullable numpy int/bool column with NULLs: NaN, as pandas does


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-encoded values (DuckDB ENUM, Parquet dictionaries) as their values; string_view as string."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_string_view(col.type):
        col = col.cast(pa.string())
    return col


def decimal_to_float(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Decimals as the nearest float64, through their exact text.

    Arrow's direct decimal -> double cast is not correctly rounded (about 7% of ``decimal(20, 2)`` values
    land one ulp off); parsing the decimal's text is (Arrow's string -> double uses ``fast_float``), and
    equals Python's ``float(Decimal(x))`` and PostgreSQL's ``CAST(x AS double precision)``.
    """
    return pc.cast(pc.cast(values, pa.string()), pa.float64())


def _categorical(col: pa.ChunkedArray, inp: Input) -> tuple[pd.Categorical, np.ndarray]:
    """Values as the training categories; returns the mask of non-null values that are not a level."""
    levels = list(inp.levels or ())
    values = _plain(col)
    if levels and not all(isinstance(v, str) for v in levels):
        # integer (or boolean) levels: compare as the levels' type
        py = pd.Series(values.to_pandas(), dtype=object)
        codes = pd.Categorical(py, categories=levels)
    else:
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = pc.cast(values, pa.string())
        codes = pd.Categorical(values.to_numpy(zero_copy_only=False), categories=levels)
    present = ~pc.is_null(values).to_numpy(zero_copy_only=False)
    unknown = present & (np.asarray(codes.codes) < 0)
    return codes, unknown


def _column(col: pa.ChunkedArray, inp: Input) -> pd.Series | pd.Categorical | np.ndarray:
    dtype = inp.dtype
    values = _plain(col)
    has_null = values.null_count > 0
    if dtype == "arrow":
        return col.to_pandas()
    if dtype in ("boolean", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
                 "Float32", "Float64"):
        return values.to_pandas(types_mapper=lambda _t: pd.api.types.pandas_dtype(dtype))
    if dtype == "bool" or dtype.startswith(("int", "uint")):
        if has_null:
            return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        return values.to_numpy(zero_copy_only=False).astype(dtype)
    if dtype.startswith("float"):
        if pa.types.is_decimal(values.type):
            values = decimal_to_float(values)
        elif pa.types.is_boolean(values.type):
            values = pc.cast(values, pa.float64())
        arr = values.to_numpy(zero_copy_only=False)
        return np.asarray(arr, dtype=np.float64).astype(dtype, copy=False)
    if dtype == "object":
        if pa.types.is_boolean(values.type) or pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            arr = np.asarray(values.to_pylist(), dtype=object)
        else:
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                values = pc.cast(values, pa.string())
            arr = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
        if has_null:
            null = pc.is_null(values).to_numpy(zero_copy_only=False)
            arr[null] = MISSING.get(inp.missing, np.nan)
        return arr
    if dtype.startswith("datetime64"):
        values, _ = within_datetime_range(values, dtype)
        return pd.Series(values.to_pandas()).astype(dtype)
    if dtype in ("str", "string") or dtype.startswith("string"):
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = pc.cast(values, pa.string())
        return pd.Series(values.to_pandas()).astype(dtype)
    return pd.Series(values.to_pandas()).astype(dtype)


# The instants pandas' datetime64[ns] holds, in microseconds since the epoch (pd.Timestamp.min/max).
_NS_RANGE_US = (-(2**63 - 1) // 1000, (2**63 - 1) // 1000)


def within_datetime_range(values: pa.ChunkedArray, dtype: str) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Timestamps and dates outside what ``dtype`` holds, set to NULL, and the mask of those rows.

    Only ``datetime64[ns]`` (with or without a zone) has a bounded range that source values exceed
    (1677-09-21 .. 2262-04-11; open-ended contracts say 9999-12-31): a model trained with microsecond or
    coarser datetimes gets every value as it is. The masked rows must not be scored (``out_of_range_rows``).
    """
    empty = np.zeros(len(values), dtype=bool)
    if "[ns" not in dtype or not (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)):
        return values, empty
    tz = values.type.tz if pa.types.is_timestamp(values.type) else None
    micros = pc.cast(pc.cast(values, pa.timestamp("us", tz)), pa.int64())
    outside = pc.or_(pc.less(micros, _NS_RANGE_US[0]), pc.greater(micros, _NS_RANGE_US[1]))
    mask = pc.fill_null(outside, False).to_numpy(zero_copy_only=False)
    if not mask.any():
        return values, empty
    return pc.if_else(pa.chunked_array([mask]) if isinstance(values, pa.ChunkedArray) else pa.array(mask),
                      pa.scalar(None, values.type), values), mask


def out_of_range_rows(table: pa.Table, inputs: tuple[Input, ...] | list[Input]) -> dict[str, np.ndarray]:
    """``{column: mask}`` of the rows whose datetime input lies outside the range of the dtype the model was
    trained with (``within_datetime_range``): such rows are quarantined naming the column and the value."""
    out = {}
    for inp in inputs:
        if inp.dtype.startswith("datetime64"):
            _, mask = within_datetime_range(_plain(table.column(inp.name)), inp.dtype)
            if mask.any():
                out[inp.name] = mask
    return out


def to_model_frame(table: pa.Table, inputs: tuple[Input, ...] | list[Input]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The model's input frame for the rows of ``table``.

    Args:
        table: rows with (at least) every input column, any Arrow types.
        inputs: the signature's inputs, in the model's order.

    Returns:
        (frame with exactly the input columns in order, {column: mask of rows whose value is not one of the
        training categories}); masked rows must not be scored (their category would be read as missing).
    """
    data: dict[str, Any] = {}
    unknown: dict[str, np.ndarray] = {}
    for inp in inputs:
        col = table.column(inp.name)
        if inp.dtype == "category":
            data[inp.name], bad = _categorical(col, inp)
            if bad.any():
                unknown[inp.name] = bad
        else:
            data[inp.name] = _column(col, inp)
    frame = pd.DataFrame({k: (v.reset_index(drop=True) if isinstance(v, pd.Series) else v)
                          for k, v in data.items()}, columns=[i.name for i in inputs])
    return frame, unknown
