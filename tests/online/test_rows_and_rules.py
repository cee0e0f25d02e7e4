"""In-process: JSON rows typed by the signature, and the per-row rules online (reject or warn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from scoring.online.rows import ROW_COLUMN, RowError, to_table
from tests.online.helpers import INPUTS, json_rows, mixed_frame, setup_model

FEATURES = [{"name": "n", "type": "integer"}, {"name": "x", "type": "float"}, {"name": "b", "type": "boolean"},
            {"name": "s", "type": "string"}, {"name": "t", "type": "timestamp"}]


def test_rows_are_typed_by_the_feature_schema() -> None:
    rows = [{"n": 3, "x": 2, "b": False, "s": "007", "t": "2026-05-01T10:00:00+02:00", "extra": [1]},
            {"n": 4.0, "x": None, "b": None, "s": None, "t": None}]
    table = to_table(rows, FEATURES, key_column="id")
    assert table.column_names == [ROW_COLUMN, "id", "n", "x", "b", "s", "t"]
    assert table.schema.field("n").type == pa.int64() and table.column("n").to_pylist() == [3, 4]
    assert table.column("x").to_pylist() == [2.0, None]
    assert table.column("s").to_pylist() == ["007", None]  # leading zeros kept
    assert str(table.column("t")[0]) == "2026-05-01 08:00:00"  # aware time -> naive UTC
    assert table.column("id").to_pylist() == [None, None]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("n", True, "integer"), ("n", 1.5, "integer"), ("n", "3", "integer"), ("x", "2.0", "number"),
    ("x", False, "number"), ("b", 1, "true or false"), ("s", 7, "string"), ("t", "yesterday", "ISO 8601"),
    ("n", 2**63, "64-bit")])
def test_a_value_of_the_wrong_type_names_row_field_and_value(field: str, value: object, message: str) -> None:
    good = {"n": 1, "x": 1.0, "b": True, "s": "a", "t": None}
    with pytest.raises(RowError) as err:
        to_table([good, {**good, field: value}], FEATURES, first_row=10)
    assert (err.value.row, err.value.field) == (11, field)
    assert message in err.value.error and str(value).lower()[:5] in str(err.value).lower()


def test_missing_input_and_non_object_rows() -> None:
    with pytest.raises(RowError, match="'s' = <missing>: missing input"):
        to_table([{"n": 1, "x": 1.0, "b": True, "t": None}], FEATURES)
    with pytest.raises(RowError, match="expected a JSON object"):
        to_table([[1, 2]], FEATURES)


def test_rule_failures_rejected_or_scored_with_a_warning(tmp_path: Path) -> None:
    from scoring.config import load_config
    from scoring.online.batching import score_micro_batch
    from scoring.online.loaded import ModelSlot

    frame = mixed_frame(120)
    cfg, model = setup_model(tmp_path, frame)
    loaded = ModelSlot(load_config(cfg)).load()
    rows = json_rows(frame)[:3]
    rows[1] = {**rows[1], "code": None}  # breaks the suite's not-null rule on a non-nullable input
    rows[2] = {**rows[2], "region": "central"}  # a category the model never saw
    table = to_table(rows, loaded.features)
    rejected = score_micro_batch(loaded, table)
    assert "score" in rejected[0]
    assert rejected[1]["rejected"]["rule"] == "expect_column_values_to_not_be_null"
    assert rejected[1]["rejected"]["column"] == "code"
    assert rejected[2]["rejected"]["column"] == "region"
    warned = score_micro_batch(loaded, table, on_rule="warn")
    assert warned[0] == rejected[0]
    assert warned[1]["warning"]["rule"] == "expect_column_values_to_not_be_null"
    truth = frame.iloc[[1]][INPUTS].copy()
    truth["code"] = pd.Series([np.nan], dtype="str", index=truth.index)
    assert warned[1]["score"] == pytest.approx(model.predict_proba(truth)[0, 1], abs=1e-12)
    assert "rejected" in warned[2]  # the model cannot score an unseen category right: refused either way
