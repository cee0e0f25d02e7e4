"""The parity check run at registration: the production path must reproduce the model's own output.

A sample of training rows (default 2,000, plus up to 20 rows with a missing value in each input) goes
through what a run does to a source row: pandas -> Arrow -> a DuckDB table -> Arrow as DuckDB delivers it
-> ``convert.to_model_frame`` -> the model. Its outputs are compared with the model's own output on the
user's frame (the declared inputs in the declared order: for a model fitted without column names
``--features`` is the order; a misordered ``--features`` is caught by the registration's chance-level
metrics check, ``metrics.chance_level``). Any difference above ``TOLERANCE`` refuses the registration.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from scoring.errors import ModelStoreError
from scoring.models.contract import Contract
from scoring.models.convert import to_model_frame
from scoring.models.scorer import raw_outputs

logger = logging.getLogger(__name__)

TOLERANCE = 1e-9
SAMPLE_ROWS = 2000
NULL_ROWS = 20


def parity_sample(frame: pd.DataFrame, names: list[str], rows: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    """Up to ``rows`` random rows plus up to ``NULL_ROWS`` rows with a missing value in each input column."""
    picked: set[int] = set()
    positions = np.arange(len(frame))
    for name in names:
        nulls = positions[frame[name].isna().to_numpy()]
        picked.update(nulls[:NULL_ROWS].tolist())
    rng = np.random.default_rng(seed)
    picked.update(rng.choice(positions, size=min(rows, len(frame)), replace=False).tolist())
    return frame.iloc[sorted(picked)]


def as_source_delivers(sample: pd.DataFrame, names: list[str]) -> pa.Table:
    """The sample's input columns written to a DuckDB table and read back as Arrow, as a run reads a source."""
    from scoring.storage.duck import duck_connect

    arrow = pa.Table.from_pandas(sample[names], preserve_index=False)
    with duck_connect(utc=False) as con:
        con.register("training_sample", arrow)
        return con.sql("SELECT * FROM training_sample").to_arrow_table()


def _given(sample: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The user's frame as the model is applied to it: the declared inputs in the declared order (for a model
    fitted without column names ``--features`` is the order; a training file's column order never is)."""
    return sample[contract.names]


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: every output equal within TOLERANCE (NaN equals NaN)."""
    diff = np.abs(a - b)
    ok = (diff <= TOLERANCE) | (np.isnan(a) & np.isnan(b))
    return ok if ok.ndim == 1 else ok.all(axis=1)


def _suspects(sample: pd.DataFrame, converted: pd.DataFrame, contract: Contract) -> str:
    changed = [n for n in contract.names if str(converted[n].dtype) != str(sample[n].dtype)
               or not converted[n].reset_index(drop=True).equals(sample[n].reset_index(drop=True))]
    if changed:
        return "columns that convert differently: " + ", ".join(
            f"{n!r} ({sample[n].dtype} -> {converted[n].dtype})" for n in changed[:6])
    return "no column differs visibly; the model may not be deterministic"


def parity_check(model: Any, frame: pd.DataFrame, contract: Contract, model_name: str,
                 rows: int = SAMPLE_ROWS, seed: int = 0) -> dict[str, Any]:
    """Compare the production path with the model's own output on a sample of ``frame``.

    Args:
        model: the fitted model.
        frame: the training rows as the user gave them (every input column).
        contract: the inferred signature.
        model_name: for messages.
        rows: sample size (random rows; rows with missing values are added).
        seed: sampling seed.

    Returns:
        ``{"passed": True, "rows", "max_abs_diff", "tolerance", "seconds", "path"}`` for the metadata.

    Raises:
        ModelStoreError: (one line) the model fails on rows as a source delivers them, or outputs differ
            above the tolerance: names the rows and the suspected columns.
    """
    started = time.perf_counter()
    sample = parity_sample(frame, contract.names, rows, seed)
    try:
        own = raw_outputs(model, _given(sample, contract), contract)
    except Exception as exc:  # noqa: BLE001 - the user's own frame: say so in one line
        raise ModelStoreError(f"model {model_name}: the model fails on its own training rows: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                              ) from None
    delivered = as_source_delivers(sample, contract.names)
    converted, unknown = to_model_frame(delivered, contract.inputs)
    try:
        ours = raw_outputs(model, converted, contract)
    except Exception as exc:  # noqa: BLE001 - the production path broke: refuse with the reason
        raise ModelStoreError(f"model {model_name}: parity check failed: the model raises on rows as a source "
                              f"delivers them ({type(exc).__name__}: {str(exc).strip().splitlines()[0]}); "
                              f"{_suspects(sample, converted, contract)}") from None
    ok = _same(own, ours)
    diff = np.where(np.isnan(own) & np.isnan(ours), 0.0, np.abs(own - ours))
    worst = float(np.nanmax(diff)) if diff.size else 0.0
    if not ok.all():
        bad = np.flatnonzero(~ok)
        labels = [str(v) for v in sample.index[bad[:5]]]
        raise ModelStoreError(
            f"model {model_name}: parity check failed: outputs differ on {bad.size} of {len(sample)} sample rows "
            f"(max |diff| {worst:.3g} > {TOLERANCE:g}; rows {', '.join(labels)}); "
            f"{_suspects(sample, converted, contract)}")
    result = {"passed": True, "rows": int(len(sample)), "max_abs_diff": worst, "tolerance": TOLERANCE,
              "seconds": round(time.perf_counter() - started, 4), "path": "pandas -> Arrow -> DuckDB -> Arrow -> model",
              "unknown_levels_in_sample": {k: int(v.sum()) for k, v in unknown.items()}}
    logger.info("parity check of %s: %s rows, max |diff| %.3g", model_name, result["rows"], worst)
    return result
