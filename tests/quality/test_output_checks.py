"""Output checks on staged predictions, per model task."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from scoring.quality.output_checks import check_predictions
from tests.storage.contract_helpers import staged, write


def _check(tmp_path: Path, table: pa.Table, task: str) -> list[str]:
    return check_predictions([write(tmp_path / "chunk.parquet", table)], table.num_rows, task)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_each_task_shape_passes(tmp_path: Path, task: str) -> None:
    assert _check(tmp_path, staged(task), task) == []


def test_regression_accepts_any_finite_value_and_refuses_nan_and_inf(tmp_path: Path) -> None:
    rows = staged("regression", passthrough=False)
    assert _check(tmp_path, rows.set_column(1, "score", pa.array([37.5, -4.0, 1e9, 0.0])), "regression") == []
    for bad in (float("nan"), float("inf")):
        problems = _check(tmp_path, rows.set_column(1, "score", pa.array([37.5, bad, 1.0, 2.0])), "regression")
        assert problems == ["output check: 1 predictions have a null, NaN or infinite score"]


def test_binary_refuses_scores_outside_unit_interval_and_bad_labels(tmp_path: Path) -> None:
    rows = staged("binary", passthrough=False)
    assert _check(tmp_path, rows.set_column(1, "score", pa.array([0.1, 1.5, 0.2, 0.3])), "binary") == [
        "output check: 1 predictions have a null or NaN score or one outside [0, 1]"]
    labels = pa.array([0, None, 2, 1], pa.int8())
    assert _check(tmp_path, rows.set_column(2, "label", labels), "binary") == [
        "output check: 2 predictions have a label other than 0 or 1"]


def test_label_must_be_null_and_class_present_by_task(tmp_path: Path) -> None:
    multi = staged("multiclass", passthrough=False)
    assert _check(tmp_path, multi.set_column(2, "label", pa.array([1, None, None, 0], pa.int8())), "multiclass") == [
        "output check: 2 predictions have a label (a multiclass model sets none)"]
    assert _check(tmp_path, multi.set_column(3, "predicted_class", pa.array(["a", None, "b", "c"])),
                  "multiclass") == ["output check: 1 predictions of a multiclass model have no predicted_class"]
    regression = staged("regression", passthrough=False)
    assert _check(tmp_path, regression.set_column(2, "label", pa.array([0, 0, 0, 0], pa.int8())), "regression") == [
        "output check: 4 predictions have a label (a regression model sets none)"]


def test_files_staged_before_the_contract_still_check_as_binary(tmp_path: Path) -> None:
    old = staged("binary", passthrough=False).select(["source_key", "score", "label"])
    assert _check(tmp_path, old, "binary") == []
    with pytest.raises(ValueError, match="unknown model task 'ranking'"):
        _check(tmp_path, old, "ranking")
