"""Publishing staged predictions of every task's shape (binary, multiclass, regression) with passthrough
columns, on both results stores: the published rows equal the staged ones exactly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from scoring.config import PREDICTION_COLUMNS, ResultsConfig
from scoring.errors import PublishError
from scoring.storage.results import open_results
from scoring.storage.results.tables import predictions_spec
from tests.storage.contract_helpers import expected, published, run_record, staged, write

DAYS = {"binary": dt.date(2026, 3, 6), "multiclass": dt.date(2026, 3, 7), "regression": dt.date(2026, 3, 8)}


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "duckdb":
        cfg = ResultsConfig(kind="duckdb", path=tmp_path / "results.duckdb", staging_dir=tmp_path / "staging")
    else:
        pg_url = request.getfixturevalue("pg_url")
        cfg = ResultsConfig(kind="postgres", url=pg_url, schema=request.getfixturevalue("pg_schema"),
                            staging_dir=tmp_path / "staging")
    results = open_results(cfg)
    results.ensure_schema()
    return results


def _publish(store, tmp_path: Path, run_id: str, day: dt.date, table: pa.Table) -> None:
    run = run_record(run_id, day)
    store.start_run(run)
    store.publish(run, [write(tmp_path / f"{run_id}.parquet", table)], [])


def test_config_reserved_names_are_the_predictions_columns() -> None:
    assert sorted(PREDICTION_COLUMNS) == sorted(predictions_spec("predictions").column_names)


def test_each_task_publishes_exactly_what_was_staged(store, tmp_path: Path) -> None:
    for task, day in DAYS.items():
        rows = staged(task)
        _publish(store, tmp_path, f"run-{task}", day, rows)
        assert published(store, day, rows.column_names) == expected(rows), task
    run = published(store, DAYS["regression"], ["source_key", "run_id", "model_version", "day"])
    assert {(r["run_id"], r["model_version"], r["day"]) for r in run} == {("run-regression", 1, DAYS["regression"])}


def test_partition_without_passthrough_gets_null_and_old_files_lack_new_columns(store, tmp_path: Path) -> None:
    _publish(store, tmp_path, "with", DAYS["binary"], staged("binary"))
    plain = staged("binary", passthrough=False)
    _publish(store, tmp_path, "without", DAYS["multiclass"], plain)
    rows = published(store, DAYS["multiclass"], ["source_key", "customer_id", "segment", "signup_at"])
    assert [r["source_key"] for r in rows] == ["k1", "k2", "k3", "k4"]
    assert all(r["customer_id"] is None and r["segment"] is None and r["signup_at"] is None for r in rows)
    # A file staged before the model contract (source_key, score, label only) still publishes.
    old = plain.select(["source_key", "score", "label"])
    _publish(store, tmp_path, "old", DAYS["regression"], old)
    rows = published(store, DAYS["regression"], ["source_key", "score", "label", "predicted_class", "probabilities"])
    assert rows == [{**r, "predicted_class": None, "probabilities": None} for r in expected(old)]


def test_a_passthrough_type_conflict_is_one_line_naming_column_and_types(store, tmp_path: Path) -> None:
    _publish(store, tmp_path, "first", DAYS["binary"], staged("binary"))
    bad = staged("binary").set_column(5, "customer_id", pa.array(["a", "b", "c", "d"]))
    with pytest.raises(PublishError, match=r"'customer_id': staged as string but .*customer_id is (?i:bigint)") as exc:
        _publish(store, tmp_path, "second", DAYS["multiclass"], bad)
    assert "\n" not in str(exc.value)
    assert published(store, DAYS["multiclass"], ["source_key"]) == []


def test_a_passthrough_named_like_a_predictions_column_is_refused(store, tmp_path: Path) -> None:
    bad = staged("binary").append_column("day", pa.array(["x"] * 4))
    with pytest.raises(PublishError, match="passthrough column 'day' is named like a column"):
        _publish(store, tmp_path, "r", DAYS["binary"], bad)
