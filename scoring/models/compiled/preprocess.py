"""The Pipeline's standard preprocessing computed by NumPy, bit for bit as the Pipeline's own ``transform``.

Recognised (with exactly these settings; anything else is not recognised and the Pipeline's own
``transform`` runs, the reason recorded):

- the project's ``features.CleanInput`` (numeric coercion, out-of-range and infinite values to NaN, the
  explicit missing level);
- a ``ColumnTransformer`` (columns named, dense output, ``remainder`` ``drop`` or ``passthrough`` of numeric
  columns, no pandas output) whose transformers are ``drop``, ``passthrough`` (numeric columns), a
  ``OneHotEncoder`` (``drop=None``, no infrequent categories, dense float64 output, ``handle_unknown``
  ``ignore`` or ``error``, string categories), an ``OrdinalEncoder`` (string categories, float64 output,
  ``handle_unknown`` ``error`` or ``use_encoded_value``) or a Pipeline of ``SimpleImputer`` (NaN as the
  missing value, no indicator, no empty feature) and ``StandardScaler`` steps on numeric columns;
- ``"passthrough"`` steps of the outer Pipeline.

Exactness by construction: the imputer is ``where(isnan(x), statistic, x)`` and the scaler
``(x - mean_) / scale_`` in float64, the same one operation per value as scikit-learn's; one-hot and ordinal
outputs are small integers in float64. Whatever the reasoning, :func:`prove` compares the outputs bit for
bit with the Pipeline's own transform before the plan is used, and every chunk whose values are not of the
recognised kinds (a categorical column that is not all strings, a numeric column of object dtype) is
transformed by the Pipeline itself.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


class NotRecognised(ValueError):
    """A preprocessing step (or setting) this module does not compute; the message says which."""


class Unsupported(ValueError):
    """A chunk whose values are not of the recognised kinds: the Pipeline's own transform takes it."""


# ---- column programs: each writes its outputs into a slice of the (n x outputs) float64 result ----

@dataclass
class Numeric:
    """Numeric columns through SimpleImputer / StandardScaler steps (or none: passthrough)."""

    columns: list[str]
    steps: list[tuple[str, np.ndarray | None, np.ndarray | None]] = field(default_factory=list)  # (kind, a, b)

    def width(self) -> int:
        return len(self.columns)

    def write(self, data: dict[str, Any], out: np.ndarray) -> None:
        for j, column in enumerate(self.columns):
            x = _float_column(data[column])
            if self.steps and np.isinf(x).any():
                raise Unsupported(f"infinity in {column}: the imputer/scaler's input check raises")
            for kind, a, b in self.steps:  # one operation per value, as scikit-learn's (in float64)
                if kind == "impute":
                    x = np.where(np.isnan(x), a[j], x)
                else:
                    if a is not None:
                        x = x - a[j]
                    if b is not None:
                        x = x / b[j]
            out[:, j] = x

    def describe(self) -> str:
        kinds = "+".join(k for k, _, _ in self.steps) or "passthrough"
        return f"{kinds}({len(self.columns)})"


@dataclass
class Encoded:
    """Categorical columns one-hot (``onehot``) or ordinal (``ordinal``) encoded against ``categories``."""

    kind: str
    columns: list[str]
    categories: list[np.ndarray]
    ignore_unknown: bool  # one-hot: unknown -> all zeros; ordinal: unknown -> ``unknown_value``
    unknown_value: float = np.nan

    def width(self) -> int:
        return sum(len(c) for c in self.categories) if self.kind == "onehot" else len(self.columns)

    def write(self, data: dict[str, Any], out: np.ndarray) -> None:
        """``out``: the program's slice of the result, zero-filled."""
        n = out.shape[0]
        offset = 0
        rows = np.arange(n)
        for j, (column, cats) in enumerate(zip(self.columns, self.categories, strict=True)):
            levels, codes = data[column] if isinstance(data[column], tuple) else as_levels(data[column])
            position = np.append(pd.Index(cats).get_indexer(levels), -1)  # code -1 (a null) -> unknown
            found = position[codes]
            unknown = found < 0
            if unknown.any() and not self.ignore_unknown:
                raise Unsupported(f"unknown level in {column}: the Pipeline's own transform raises")
            if self.kind == "onehot":
                known = ~unknown
                out[rows[known], offset + found[known]] = 1.0
                offset += len(cats)
            else:
                out[:, j] = np.where(unknown, self.unknown_value, found.astype(np.float64))

    def describe(self) -> str:
        return f"{self.kind}({len(self.columns)} columns, {self.width()} outputs)"


def _float_column(values: Any) -> np.ndarray:
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise Unsupported(f"a numeric column of dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def as_levels(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """A column of strings as (levels: object array of str, codes: int64, -1 for a null) with
    ``levels[codes]`` the values: from a pandas Categorical (its codes), an Arrow-backed string column
    (Arrow's dictionary encoding) or an object array of strings (a hash factorisation).

    Raises:
        Unsupported: values that are not all strings (or null).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values, copy=False)
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        levels = np.asarray(dtype.categories, dtype=object)
        codes = np.asarray(series.cat.codes, dtype=np.int64)
    elif _arrow_strings(dtype):
        import pyarrow as pa
        import pyarrow.compute as pc

        arrow = pa.array(series.array)
        arrow = arrow.combine_chunks() if isinstance(arrow, pa.ChunkedArray) else arrow
        encoded = pc.dictionary_encode(arrow)
        levels = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        arr = series.to_numpy(dtype=object)
        if pd.api.types.infer_dtype(arr, skipna=True) not in ("string", "empty"):
            raise Unsupported("a categorical column that is not all strings")
        codes, uniques = pd.factorize(arr, use_na_sentinel=True)
        levels, codes = np.asarray(uniques, dtype=object), codes.astype(np.int64)
    if not all(isinstance(v, str) for v in levels):
        raise Unsupported("a categorical column whose levels are not all strings")
    return levels, codes


def _arrow_strings(dtype: Any) -> bool:
    storage = getattr(dtype, "storage", None)
    if isinstance(dtype, pd.StringDtype) and storage == "pyarrow":
        return True
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        return pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype)
    return False


@dataclass
class Clean:
    """``features.CleanInput``: numeric columns coerced, out-of-range/infinite to NaN; categoricals as text
    (a null is the explicit missing level; a column of another dtype becomes ``str`` of each value)."""

    ranges: dict[str, tuple[float | None, float | None]]
    categorical: list[str]

    def apply(self, frame: Any) -> dict[str, Any]:
        from features.transformers import MISSING_LEVEL

        if not isinstance(frame, pd.DataFrame):
            raise Unsupported("CleanInput takes a DataFrame")
        out: dict[str, Any] = {}
        for col, (low, high) in self.ranges.items():
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(values)
            if low is not None:
                bad |= values < low
            if high is not None:
                bad |= values > high
            out[col] = np.where(bad, np.nan, values)
        for col in self.categorical:
            series = frame[col]
            if isinstance(series.dtype, pd.CategoricalDtype) or _arrow_strings(series.dtype):
                levels, codes = as_levels(series) if not isinstance(series.dtype, pd.CategoricalDtype) else \
                    (np.asarray(series.dtype.categories, dtype=object), np.asarray(series.cat.codes, np.int64))
                if not pd.api.types.is_string_dtype(series):
                    levels = np.array([str(v) for v in levels], dtype=object)
                levels = np.append(levels, MISSING_LEVEL).astype(object)
                out[col] = (levels, np.where(codes < 0, len(levels) - 1, codes))
                continue
            values = series.to_numpy(dtype=object, na_value=MISSING_LEVEL)  # CleanInput's own code
            if not pd.api.types.is_string_dtype(series):
                values = np.array([str(v) for v in values], dtype=object)
            out[col] = values
        return out


@dataclass
class Plan:
    """The recognised preprocessing: an optional cleaning step, then column programs side by side."""

    clean: Clean | None
    programs: list[Numeric | Encoded]
    inputs: list[str]

    def describe(self) -> list[str]:
        return ([f"CleanInput({len(self.clean.ranges)} numeric, {len(self.clean.categorical)} categorical)"]
                if self.clean else []) + [p.describe() for p in self.programs]

    def transform(self, frame: Any) -> np.ndarray:
        """The trees' inputs before the estimator's validation: float64 (n x outputs), C order.

        Raises:
            Unsupported: the chunk's values are not of the recognised kinds (the caller uses the Pipeline).
        """
        if self.clean is not None:
            data = self.clean.apply(frame)
        elif isinstance(frame, pd.DataFrame):
            data = {c: frame[c] for c in self.inputs if c in frame.columns}
        else:
            raise Unsupported("the recognised ColumnTransformer reads columns by name")
        out = np.zeros((len(frame), sum(p.width() for p in self.programs)), dtype=np.float64)
        at = 0
        for program in self.programs:
            program.write(data, out[:, at:at + program.width()])
            at += program.width()
        return out


# ---- recognising a fitted Pipeline ----

def _is(obj: Any, module: str, name: str) -> bool:
    return type(obj).__name__ == name and type(obj).__module__.startswith(module)


def _output_default(step: Any) -> None:
    config = getattr(step, "_sklearn_output_config", {}) or {}
    if config.get("transform") not in (None, "default"):
        raise NotRecognised(f"{type(step).__name__} has set_output(transform={config.get('transform')!r})")


def _names(columns: Any, where: str) -> list[str]:
    if isinstance(columns, str):
        return [columns]
    cols = list(columns) if isinstance(columns, list | tuple | np.ndarray | pd.Index) else None
    if cols is None or not all(isinstance(c, str) for c in cols):
        raise NotRecognised(f"{where} selects columns by {type(columns).__name__}, not by name")
    return cols


def _numeric_steps(step: Any, where: str) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    from sklearn.pipeline import Pipeline

    if isinstance(step, Pipeline):
        out = []
        for name, inner in step.steps:
            if inner is None or inner == "passthrough":
                continue
            out += _numeric_steps(inner, f"{where}/{name}")
        return out
    _output_default(step)
    if _is(step, "sklearn.impute", "SimpleImputer"):
        if not (isinstance(step.missing_values, float) and np.isnan(step.missing_values)):
            raise NotRecognised(f"{where}: SimpleImputer(missing_values={step.missing_values!r}) (only NaN)")
        if step.add_indicator:
            raise NotRecognised(f"{where}: SimpleImputer(add_indicator=True)")
        stats = np.asarray(step.statistics_, dtype=np.float64)
        if stats.dtype != np.float64 or np.isnan(stats).any() or step.statistics_.dtype.kind not in "fiu":
            raise NotRecognised(f"{where}: SimpleImputer with an empty feature or non-numeric statistics")
        return [("impute", stats, None)]
    if _is(step, "sklearn.preprocessing", "StandardScaler"):
        mean = np.asarray(step.mean_, dtype=np.float64) if step.with_mean else None
        scale = np.asarray(step.scale_, dtype=np.float64) if step.with_std else None
        if (mean is not None and step.mean_.dtype != np.float64) or (scale is not None and step.scale_.dtype
                                                                      != np.float64):
            raise NotRecognised(f"{where}: StandardScaler fitted on non-float64 data")
        return [("scale", mean, scale)]
    raise NotRecognised(f"{where}: {type(step).__name__} is not a recognised step")


def _string_categories(step: Any, where: str) -> list[np.ndarray]:
    cats = [np.asarray(c, dtype=object) for c in step.categories_]
    for c in cats:
        if not all(isinstance(v, str) for v in c):
            raise NotRecognised(f"{where}: categories that are not all strings (missing or numeric levels)")
    return cats


def _encoder(step: Any, columns: list[str], where: str) -> Encoded:
    _output_default(step)
    if _is(step, "sklearn.preprocessing", "OneHotEncoder"):
        if step.drop is not None or getattr(step, "_infrequent_enabled", False):
            raise NotRecognised(f"{where}: OneHotEncoder with drop or infrequent categories")
        if step.sparse_output or np.dtype(step.dtype) != np.float64:
            raise NotRecognised(f"{where}: OneHotEncoder output is not dense float64")
        if step.handle_unknown not in ("ignore", "error"):
            raise NotRecognised(f"{where}: OneHotEncoder(handle_unknown={step.handle_unknown!r})")
        return Encoded("onehot", columns, _string_categories(step, where), step.handle_unknown == "ignore")
    if _is(step, "sklearn.preprocessing", "OrdinalEncoder"):
        if getattr(step, "_infrequent_enabled", False) or np.dtype(step.dtype) != np.float64:
            raise NotRecognised(f"{where}: OrdinalEncoder with infrequent categories or non-float64 output")
        if step.handle_unknown not in ("error", "use_encoded_value"):
            raise NotRecognised(f"{where}: OrdinalEncoder(handle_unknown={step.handle_unknown!r})")
        unknown = float(step.unknown_value) if step.handle_unknown == "use_encoded_value" else np.nan
        return Encoded("ordinal", columns, _string_categories(step, where),
                       step.handle_unknown == "use_encoded_value", unknown)
    raise NotRecognised(f"{where}: {type(step).__name__} is not a recognised step")


def _identity(step: Any) -> bool:
    """``passthrough``, as given or as fitted (scikit-learn stores it as a FunctionTransformer without func)."""
    if isinstance(step, str):
        return step == "passthrough"
    return (_is(step, "sklearn.preprocessing", "FunctionTransformer") and step.func is None
            and not step.validate)


def _column_transformer(ct: Any) -> tuple[list[Numeric | Encoded], list[str]]:
    _output_default(ct)
    if getattr(ct, "sparse_output_", False):
        raise NotRecognised("ColumnTransformer output is sparse")
    names = [str(c) for c in getattr(ct, "feature_names_in_", [])]
    programs: list[Numeric | Encoded] = []
    for name, step, columns in ct.transformers_:
        where = f"ColumnTransformer/{name}"
        if step == "drop":
            continue
        if name == "remainder" and not isinstance(columns, str) and all(isinstance(c, int | np.integer)
                                                                       for c in columns):
            columns = [names[int(i)] for i in columns]  # the remainder's columns are stored by position
        cols = _names(columns, where)
        if not cols:
            continue
        if _identity(step):
            programs.append(Numeric(cols))
        elif _is(step, "sklearn.preprocessing", "OneHotEncoder") or _is(step, "sklearn.preprocessing",
                                                                         "OrdinalEncoder"):
            programs.append(_encoder(step, cols, where))
        else:
            programs.append(Numeric(cols, _numeric_steps(step, where)))
    return programs, names


def recognise(pre: Any) -> Plan:
    """The plan computing ``pre.transform`` (the Pipeline's preprocessing part) by NumPy.

    Raises:
        NotRecognised: a step or setting not recognised (the message says which, in one line).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in pre.steps] if isinstance(pre, Pipeline) else [pre]
    steps = [s for s in steps if s is not None and not (isinstance(s, str) and s == "passthrough")]
    clean = None
    if steps and _is(steps[0], "features.transformers", "CleanInput"):
        clean = Clean(dict(steps[0].ranges or {}), list(steps[0].categorical or []))
        steps = steps[1:]
    if len(steps) != 1 or not isinstance(steps[0], ColumnTransformer):
        found = ", ".join(type(s).__name__ for s in steps) or "nothing"
        raise NotRecognised(f"preprocessing is not [CleanInput ->] ColumnTransformer (found {found})")
    programs, names = _column_transformer(steps[0])
    return Plan(clean, programs, names)


# ---- the proof ----

UNKNOWN_LEVEL = "\x00never seen level\x00"


def edge_rows(frame: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """Copies of the first row with, per input column, the values the steps treat specially: NaN, None,
    +-inf, 0, out-of-range (numeric); None and a level never seen (categorical)."""
    if frame.empty:
        return frame
    categorical = {c for p in plan.programs if isinstance(p, Encoded) for c in p.columns}
    if plan.clean:
        categorical |= set(plan.clean.categorical)
    pieces = []
    for column in frame.columns:
        if column in categorical:
            values: list[Any] = [None, UNKNOWN_LEVEL]
        else:
            values = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e308]
            if plan.clean and column in plan.clean.ranges:
                low, high = plan.clean.ranges[column]
                values += [v for v in (low, high) if v is not None]
                values += [np.nextafter(float(v), d) for v in (low, high) if v is not None for d in (-np.inf,
                                                                                                      np.inf)]
        block = frame.iloc[[0] * len(values)].copy()
        block[column] = pd.Series(values, index=block.index, dtype=object if column in categorical else None)
        pieces.append(block)
    return pd.concat(pieces, ignore_index=True)


def _native(pre: Any, frame: Any) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*feature names.*")
        return np.asarray(pre.transform(frame), dtype=np.float64)


def prove(pre: Any, plan: Plan, sets: dict[str, pd.DataFrame]) -> tuple[dict[str, int], str | None]:
    """Compare ``plan.transform`` with ``pre.transform`` bit for bit, row by row, on every set.

    A row on which the Pipeline raises must make the plan refuse it too (then the Pipeline raises at
    scoring time, as it would natively). Returns (rows tried per set, the first difference or None).
    """
    from scoring.models.compiled.proof import first_difference

    tried: dict[str, int] = {}
    for name, rows in sets.items():
        if rows.empty:
            continue
        try:
            native = _native(pre, rows)
        except Exception:  # noqa: BLE001 - the Pipeline refuses these rows: try them one by one
            for i in range(len(rows)):
                one = rows.iloc[[i]]
                try:
                    native = _native(pre, one)
                except Exception:  # noqa: BLE001 - the Pipeline raises on this row: the plan must not score it
                    try:
                        plan.transform(one)
                        return tried, f"{name} row {i}: the Pipeline raises, the NumPy plan does not"
                    except Unsupported:
                        continue
                diff = first_difference(name, native, plan.transform(one))
                if diff:
                    return tried, f"{diff.probe} row {i}: Pipeline {diff.native[:8]} vs NumPy {diff.compiled[:8]}"
            tried[name] = len(rows)
            continue
        try:
            fast = plan.transform(rows)
        except Unsupported as exc:
            return tried, f"{name}: the NumPy plan cannot take the proof's own rows: {exc}"
        diff = first_difference(name, native, fast)
        tried[name] = len(rows)
        if diff:
            return tried, (f"{name} row {diff.row}: Pipeline {diff.native[:8]} vs NumPy {diff.compiled[:8]}")
    return tried, None
