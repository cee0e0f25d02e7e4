"""Checks on what is about to be published, by the model's task.

Every task: one prediction per source key, no null key, no null or NaN score. Classifiers (binary,
multiclass): score within [0, 1] and a predicted class on every row. Regression: a finite score (no +/-inf),
any real value. Label: 0 or 1 on every row for binary models, NULL for multiclass and regression.

Run once over every staged predictions file of the run with DuckDB (one scan), so keys are checked
across chunks, not only within each.
"""

from __future__ import annotations

import logging
from pathlib import Path

from scoring.storage.duck import RUN_MEMORY_MIB, duck_connect
from scoring.storage.stagefs import duck_scan, read_schema

logger = logging.getLogger(__name__)

TASKS = ("binary", "multiclass", "regression")


def _score_rule(task: str) -> tuple[str, str]:
    """(SQL condition of a bad score, what the problem line says) for the task."""
    if task == "regression":
        return "score IS NULL OR isnan(score) OR isinf(score)", "a null, NaN or infinite score"
    return "score IS NULL OR isnan(score) OR score < 0 OR score > 1", "a null or NaN score or one outside [0, 1]"


def check_predictions(files: list[Path], expected_rows: int, task: str = "binary") -> list[str]:
    """Problems with the staged predictions (empty when they are fine).

    Args:
        files: the run's staged prediction Parquet files.
        expected_rows: rows the manifests say were scored.
        task: the model's task: ``binary``, ``multiclass`` or ``regression``.

    Returns:
        One line per problem, each starting with ``output check:`` and giving the count of bad rows.

    Raises:
        ValueError: an unknown task.
    """
    if task not in TASKS:
        raise ValueError(f"unknown model task {task!r}: expected one of {', '.join(TASKS)}")
    if not files:
        return [] if expected_rows == 0 else [f"output check: {expected_rows} rows scored but nothing staged"]
    bad_score, score_problem = _score_rule(task)
    if task == "binary":
        bad_label, label_problem = "label IS NULL OR label NOT IN (0, 1)", "a label other than 0 or 1"
    else:
        bad_label, label_problem = "label IS NOT NULL", f"a label (a {task} model sets none)"
    # Files staged before the model contract have no predicted_class column (binary models only then).
    has_class = "predicted_class" in read_schema(files[0]).names
    no_class = "predicted_class IS NULL" if has_class and task != "regression" else "false"
    filters = ", ".join(f"count(*) FILTER (WHERE {cond})" for cond in (bad_score, bad_label, no_class))
    head = "SELECT count(*), count(DISTINCT source_key), count(*) FILTER (WHERE source_key IS NULL), "
    with duck_connect(utc=False, memory_mib=RUN_MEMORY_MIB) as con:
        scan, params = duck_scan(con, "staged_predictions", files, "$1")
        sql = f"{head}{filters} FROM {scan}"  # noqa: S608 - constant conditions
        rows, keys, null_keys, bad, labels, classes = con.sql(sql, params=params).fetchall()[0]
    problems = []
    if rows != expected_rows:
        problems.append(f"output check: {rows} predictions staged, {expected_rows} rows scored")
    if bad:
        problems.append(f"output check: {bad} predictions have {score_problem}")
    if labels:
        problems.append(f"output check: {labels} predictions have {label_problem}")
    if classes:
        problems.append(f"output check: {classes} predictions of a {task} model have no predicted_class")
    if null_keys:
        problems.append(f"output check: {null_keys} predictions have no source key")
    if rows - null_keys - keys:
        problems.append(f"output check: {rows - null_keys - keys} extra predictions for source keys "
                        "that already have one")
    logger.debug("output check of %s staged file(s), task %s: %s problem(s)", len(files), task, len(problems))
    return problems
