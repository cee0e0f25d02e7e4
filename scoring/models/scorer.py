"""Vectorized scoring of one chunk under the model's contract, for every task.

- binary: ``score`` = P(positive class), ``label`` = score >= threshold, ``predicted_class`` the class the
  label stands for;
- multiclass: ``predicted_class`` = the class of highest probability (``classes_[argmax]``, as
  scikit-learn's own ``predict`` does), ``score`` = its probability, ``label`` NULL; ``probabilities`` a JSON
  object of every class's probability when asked for;
- regression: ``score`` = ``predict``, ``label`` and ``predicted_class`` NULL.

A model that raises on some rows never fails the chunk: the failing rows are isolated by bisection and
quarantined with rule ``model_error`` and the exception's one-line message; the rest are scored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.models.contract import Contract
from scoring.models.convert import out_of_range_rows, to_model_frame

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = [("source_key", pa.string()), ("score", pa.float64()), ("label", pa.int8()),
                      ("predicted_class", pa.string()), ("probabilities", pa.string())]
PREDICTION_SCHEMA = pa.schema(PREDICTION_COLUMNS)
MODEL_ERROR = "model_error"
UNKNOWN_LEVEL = "expect_column_values_to_be_in_set"
OUT_OF_RANGE = "datetime_out_of_range"
MAX_PREDICT_CALLS = 2048  # bisection budget per chunk; rows still failing after it are quarantined together


@dataclass(frozen=True)
class ScoreSpec:
    """What a chunk needs to be scored, independent of where it came from.

    Attributes:
        key_column: the source key (published as ``source_key``).
        contract: the model's signature (task, classes, inputs).
        threshold: binary label threshold on the score.
        probabilities: write every class probability (classifiers) as JSON.
        passthrough: source columns copied beside the predictions.
    """

    key_column: str
    contract: Contract
    threshold: float = 0.5
    probabilities: bool = False
    passthrough: tuple[str, ...] = ()

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.contract.names)


@dataclass(frozen=True)
class Refusal:
    """Rows of a chunk that were not scored: positions in the chunk, the column, the rule and why."""

    rows: np.ndarray
    column: str | None
    rule: str
    reason: str | None = None


@dataclass
class ScoredChunk:
    """One scored chunk: predictions, rows the model could not score, and the rows that were scored."""

    predictions: pa.Table
    refused: list[Refusal]
    scored_rows: pa.Table


def encoded_width(model: Any, n_features: int) -> int:
    """Columns after preprocessing, when the model is a Pipeline that can say; else a guess."""
    try:
        return len(model[:-1].get_feature_names_out())
    except Exception:  # noqa: BLE001 - any estimator without the API falls back to a guess
        return n_features * 4


FRAME_INPUT = "frame"  # Contract.extra["input"]: a model without column names that needs a DataFrame


def model_input(frame: Any, contract: Contract) -> Any:
    """The object handed to the model: the frame (named columns, registered dtypes, declared order), or its
    values for a model fitted without column names, unless registration found it needs a DataFrame (a
    Pipeline whose first step is a transformer of the user's that reads columns by name)."""
    if contract.feature_names or contract.extra.get("input") == FRAME_INPUT:
        return frame
    return frame.to_numpy()


def needs_frame(model: Any, frame: Any, contract: Contract) -> bool:
    """Whether a model without column names fails on the values of ``frame`` (a few declared-order rows)
    and works on the DataFrame itself: then it is handed a DataFrame at the parity check and at scoring."""
    if contract.feature_names:
        return False
    try:
        raw_outputs(model, frame, contract)
        return False
    except Exception:  # noqa: BLE001 - any failure on the array: try the frame
        pass
    try:
        raw_outputs(model, frame, dataclasses.replace(contract, extra={**contract.extra, "input": FRAME_INPUT}))
        return True
    except Exception:  # noqa: BLE001 - fails either way: the parity check reports it
        return False


def raw_outputs(model: Any, frame: Any, contract: Contract) -> np.ndarray:
    """The model's own output on ``frame``: ``predict_proba`` (n x classes) or ``predict`` (n,), float64."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*feature names.*")
        x = model_input(frame, contract)
        if contract.task == "regression":
            out = np.asarray(model.predict(x), dtype=np.float64)
            if out.ndim != 1:
                raise ValueError(f"predict returned shape {out.shape}; one value per row is expected")
            return out
        return np.asarray(model.predict_proba(x), dtype=np.float64)


def plain_values(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A passthrough column as the results tables store it: dictionary-encoded values (DuckDB ENUM) as their
    values, string_view as string; every other type as it is."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col.cast(pa.string()) if pa.types.is_string_view(col.type) else col


def _predictions(keys: pa.Array, out: np.ndarray, spec: ScoreSpec, rows: pa.Table) -> pa.Table:
    c = spec.contract
    n = len(keys)
    probabilities = pa.nulls(n, pa.string())
    if c.task == "regression":
        score, label, predicted = out, pa.nulls(n, pa.int8()), pa.nulls(n, pa.string())
    elif c.task == "binary":
        pos = c.positive_index
        score = out[:, pos]
        hit = score >= spec.threshold
        label = pa.array(hit.astype(np.int8))
        names = np.array([str(c.classes[1 - pos]), str(c.classes[pos])], dtype=object)
        predicted = pa.array(names[hit.astype(np.int64)], pa.string())
    else:
        best = np.argmax(out, axis=1)
        score = out[np.arange(n), best]
        label = pa.nulls(n, pa.int8())
        predicted = pa.array(np.array([str(v) for v in c.classes], dtype=object)[best], pa.string())
    if spec.probabilities and c.task != "regression":
        names = [str(v) for v in c.classes]
        probabilities = pa.array([json.dumps(dict(zip(names, map(float, row), strict=True))) for row in out],
                                 pa.string())
    columns = [keys, pa.array(score, pa.float64()), label, predicted, probabilities]
    table = pa.table(columns, schema=PREDICTION_SCHEMA)
    for name in spec.passthrough:
        table = table.append_column(name, plain_values(rows.column(name)))
    return table


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _named_column(message: str, names: list[str]) -> str | None:
    for name in names:
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message):
            return name
    return None


class _Bisect:
    """Find the rows of a frame the model raises on, with a bounded number of calls."""

    def __init__(self, model: Any, frame: Any, contract: Contract) -> None:
        self.model, self.frame, self.contract = model, frame, contract
        self.calls = 0
        self.failed: dict[int, str] = {}
        self.outputs: dict[int, np.ndarray] = {}

    def run(self, rows: np.ndarray) -> None:
        self.calls += 1
        try:
            out = raw_outputs(self.model, self.frame.iloc[rows], self.contract)
        except Exception as exc:  # noqa: BLE001 - any model error is isolated to its rows
            if rows.size == 1 or self.calls >= MAX_PREDICT_CALLS:
                message = _one_line(exc) + ("" if rows.size == 1 else
                                            f" (not isolated: {rows.size} rows left after {self.calls} calls)")
                self.failed.update({int(r): message for r in rows})
                return
            half = rows.size // 2
            self.run(rows[:half])
            self.run(rows[half:])
            return
        for r, value in zip(rows, out, strict=True):
            self.outputs[int(r)] = value


def score_table(model: Any, table: pa.Table, spec: ScoreSpec) -> ScoredChunk:
    """Score the rows of ``table`` (rows that passed the gate, any Arrow types).

    Returns:
        Predictions in row order (``PREDICTION_SCHEMA`` plus the passthrough columns), the rows that could
        not be scored (a category the model never saw; ``model_error`` with the exception's one-line
        message), and the scored rows themselves (for drift counts).
    """
    contract = spec.contract
    width = len(contract.classes) if contract.task != "regression" else 0
    empty = np.empty((0, width)) if width else np.empty(0)
    if table.num_rows == 0:
        return ScoredChunk(_predictions(pa.array([], pa.string()), empty, spec, table), [], table)
    frame, unknown = to_model_frame(table, contract.inputs)
    refusals: list[Refusal] = []
    refused = np.zeros(table.num_rows, dtype=bool)
    for column, mask in unknown.items():
        new = mask & ~refused
        refused |= mask
        if new.any():
            refusals.append(Refusal(np.flatnonzero(new), column, UNKNOWN_LEVEL,
                                    "a level the model was not trained on"))
    for column, mask in out_of_range_rows(table, contract.inputs).items():
        new = mask & ~refused
        refused |= mask
        if new.any():
            refusals.append(Refusal(np.flatnonzero(new), column, OUT_OF_RANGE,
                                    "beyond the datetime64[ns] range (1677-09-21 .. 2262-04-11) the model was "
                                    "trained with"))
    ok = np.flatnonzero(~refused)
    try:
        out = raw_outputs(model, frame.iloc[ok] if refused.any() else frame, contract) if ok.size else empty
    except Exception as exc:  # noqa: BLE001 - isolate the rows the model raises on
        logger.warning("model raised on a chunk of %s rows (%s); isolating the failing rows", ok.size,
                       _one_line(exc))
        search = _Bisect(model, frame, contract)
        search.run(ok)
        for message in sorted(set(search.failed.values())):
            rows = np.array(sorted(r for r, m in search.failed.items() if m == message), dtype=np.int64)
            refusals.append(Refusal(rows, _named_column(message, contract.names), MODEL_ERROR, message))
            refused[rows] = True
        ok = np.flatnonzero(~refused)
        out = np.array([search.outputs[int(r)] for r in ok]) if ok.size else empty
    rows = table.take(pa.array(ok, pa.int64())) if refused.any() else table
    keys = pc.cast(plain_values(rows.column(spec.key_column)), pa.string())
    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    return ScoredChunk(_predictions(keys, out, spec, rows), refusals, rows)
