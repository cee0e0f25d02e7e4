"""Per-(day, model) report summaries computed from a run's staged chunk files, before publish.

``summarize`` returns rows for the summary tables declared in ``scoring/storage/results/tables.py``
(``prediction_stats``, ``score_bins``, ``quarantine_counts``). By task: binary counts positives (label 1) and
bins scores over [0, 1]; multiclass has no positives (0, positive rate NULL) and bins the predicted class's
probability over [0, 1]; regression has no positives either and bins the predictions over the day's
[min, max] (one bin when every prediction is the same). The caller passes them to
``ResultsStore.publish(..., extra=...)`` so they replace the day's partition in the same transaction as the
predictions: reports then read a few rows per day and never scan the predictions table.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from scoring.reports.quantiles import streaming_quantiles
from scoring.storage.duck import RUN_MEMORY_MIB, duck_connect
from scoring.storage.results.base import RunRecord
from scoring.storage.results.tables import PREDICTION_STATS, QUARANTINE_COUNTS, SCORE_BINS, TableSpec
from scoring.storage.stagefs import batch_reader, duck_scan

logger = logging.getLogger(__name__)

SCORE_BIN_COUNT = 20  # equal-width bins over [0, 1]; each training-reference bin (tenths) is two of them
QUANTILES = (0.1, 0.5, 0.9)
TASKS = ("binary", "multiclass", "regression")

_ARROW = {"string": pa.string(), "float": pa.float64(), "int32": pa.int32(), "int64": pa.int64(),
          "date": pa.date32()}

# One place for the aggregate expressions, shared with the SQL that rebuilds summaries from the predictions
# table (scoring/storage/results/views.py). percentile_cont is linear interpolation (numpy's default) in both dialects.
STATS_EXPRS = (
    "count(score) AS rows_scored, CAST(coalesce(sum(label), 0) AS BIGINT) AS positives, avg(score) AS mean_score, "
    "avg(CAST(label AS DOUBLE PRECISION)) AS positive_rate, "
    "percentile_cont(0.1) WITHIN GROUP (ORDER BY score) AS score_p10, "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY score) AS score_p50, "
    "percentile_cont(0.9) WITHIN GROUP (ORDER BY score) AS score_p90, "
    "min(score) AS score_min, max(score) AS score_max"
)
# The same aggregates without the quantiles, which ``score_quantiles`` computes from the staged scores: DuckDB's
# percentile_cont holds every value of the group in memory and cannot spill under the run's memory limit.
STAGED_STATS_EXPRS = (
    "count(score) AS rows_scored, CAST(coalesce(sum(label), 0) AS BIGINT) AS positives, avg(score) AS mean_score, "
    "avg(CAST(label AS DOUBLE PRECISION)) AS positive_rate, min(score) AS score_min, max(score) AS score_max"
)
BIN_EXPR = f"CAST(LEAST(GREATEST(FLOOR(score * {SCORE_BIN_COUNT}), 0), {SCORE_BIN_COUNT - 1}) AS INTEGER)"
# The task of a partition published without one recorded (rebuilding summaries from the predictions table):
# binary models set labels, multiclass ones only the predicted class, regressors neither.
TASK_EXPR = ("CASE WHEN count(*) = 0 THEN NULL WHEN count(label) > 0 THEN 'binary' "
             "WHEN count(predicted_class) > 0 THEN 'multiclass' ELSE 'regression' END AS task")


def bin_expr(task: str | None, lo: float | None = None, hi: float | None = None) -> str:
    """The SQL bin number (0..19) of ``score``: over [0, 1] for classifiers (and unknown tasks), over
    [lo, hi] (the day's min and max) for regression, where lo == hi puts every row in bin 0."""
    if task != "regression":
        return BIN_EXPR
    if lo is None or hi is None or not hi > lo:
        return "0"
    # repr() of a float is a plain SQL numeric literal (both values come from the data, never from users).
    scaled = f"FLOOR((score - ({float(lo)!r})) / ({float(hi)!r} - ({float(lo)!r})) * {SCORE_BIN_COUNT})"
    return f"CAST(LEAST(GREATEST({scaled}, 0), {SCORE_BIN_COUNT - 1}) AS INTEGER)"


def bin_edges(task: str | None, lo: float | None, hi: float | None) -> list[tuple[float, float]]:
    """(bin_lo, bin_hi) per bin: 20 tenths-of-halves of [0, 1] for classifiers; for regression 20 equal
    widths of [lo, hi], or the single bin [lo, lo] when lo == hi."""
    if task == "regression" and lo is not None and hi is not None:
        if not hi > lo:
            return [(lo, hi)]
        width = (hi - lo) / SCORE_BIN_COUNT
        return [(lo + b * width, hi if b == SCORE_BIN_COUNT - 1 else lo + (b + 1) * width)
                for b in range(SCORE_BIN_COUNT)]
    width = 1.0 / SCORE_BIN_COUNT
    return [(round(b * width, 10), round((b + 1) * width, 10)) for b in range(SCORE_BIN_COUNT)]


def score_quantiles(files: Sequence[Path], quantiles: Sequence[float] = QUANTILES) -> dict[str, float | None]:
    """``score_p10``, ``score_p50``, ``score_p90`` of the non-null scores in staged prediction files.

    Linear interpolation between the closest ranks (NumPy's default ``method="linear"``, the definition of SQL's
    ``percentile_cont``, which rebuilds them from the predictions table), exact, in bounded memory: the score
    column is streamed one file batch at a time, a few times (``scoring/reports/quantiles.py``), instead of held
    whole (8-24 bytes a scored row). Values are None when nothing was scored.
    """
    def batches() -> Iterator[np.ndarray]:
        for batch in batch_reader(files, ["score"]):
            yield batch.column(0).to_numpy(zero_copy_only=False)

    names = [f"score_p{round(q * 100)}" for q in quantiles]
    values = streaming_quantiles(batches, quantiles)
    if values is None:
        return dict.fromkeys(names)
    return dict(zip(names, values, strict=True))


@dataclass(frozen=True)
class Partition:
    """The (day, model) partition a run published, as far as the summaries need it."""

    day: dt.date
    model_name: str
    model_version: int
    run_id: str
    rows_rejected: int


def arrow_schema(spec: TableSpec) -> pa.Schema:
    """The Arrow schema of a summary table spec."""
    return pa.schema([pa.field(c.name, _ARROW[c.type], c.nullable) for c in spec.columns])


def summarize(run: RunRecord, prediction_files: Sequence[Path], quarantine_files: Sequence[Path],
              task: str = "binary") -> dict[str, pa.Table]:
    """Summary rows of one run's (day, model) partition, from its staged Parquet files.

    Args:
        run: the run being published (day, model name and version, run id, rows rejected).
        prediction_files: staged prediction chunks (source_key, score, label, ...).
        quarantine_files: staged quarantine chunks (source_key, column_name, rule, value, row_json).
        task: the model's task, ``binary``, ``multiclass`` or ``regression``; recorded in prediction_stats.

    Returns:
        ``{table name: rows}`` for ``publish(..., extra=...)``: one ``prediction_stats`` row, one
        ``score_bins`` row per bin (none when nothing was scored) and one ``quarantine_counts`` row per
        (rule, column).

    Raises:
        ValueError: an unknown task.
    """
    if task not in TASKS:
        raise ValueError(f"unknown model task {task!r}: expected one of {', '.join(TASKS)}")
    with duck_connect(utc=False, memory_mib=RUN_MEMORY_MIB) as con:
        if prediction_files:
            scan, params = duck_scan(con, "staged_stats", prediction_files, "$1", union=False)
            stats = con.sql(f"SELECT {STAGED_STATS_EXPRS} FROM {scan}",  # noqa: S608 - constant SQL
                            params=params).to_arrow_table().to_pylist()[0]
            stats.update(score_quantiles(prediction_files))
            expr = bin_expr(task, stats["score_min"], stats["score_max"])
            scan, params = duck_scan(con, "staged_bins", prediction_files, "$1", union=False)
            counts = dict(con.sql(f"SELECT {expr} AS bin, count(*) FROM {scan} GROUP BY 1",  # noqa: S608
                                  params=params).fetchall())
        else:
            stats, counts = {"rows_scored": 0, "positives": 0}, {}
        rules = []
        if quarantine_files:
            scan, params = duck_scan(con, "staged_rules", quarantine_files, "$1", union=False)
            rules = con.sql(f"SELECT rule, column_name, count(*) AS count FROM {scan} GROUP BY ALL",  # noqa: S608
                            params=params).to_arrow_table().to_pylist()
    return summary_tables(run, {**stats, "task": task}, counts, rules)


def summary_tables(run: RunRecord | Partition, stats: dict[str, Any], bin_counts: dict[int, int],
                   rules: list[dict[str, Any]]) -> dict[str, pa.Table]:
    """Assemble the summary tables of one partition from its aggregates.

    Args:
        run: the run that published the partition (day, model name and version, run id, rows rejected).
        stats: the columns of ``STATS_EXPRS`` (at least rows_scored and positives) and ``task`` (None: binary
            bins).
        bin_counts: rows per score bin (numbered as ``bin_expr`` of the task does); missing bins count zero.
        rules: ``{rule, column_name, count}`` per quarantine rule and column.
    """
    head = {"day": run.day, "model_name": run.model_name}
    stats_row = {**head, "model_version": run.model_version, "run_id": run.run_id,
                 "rows_quarantined": run.rows_rejected or 0, **stats}
    edges = bin_edges(stats.get("task"), stats.get("score_min"), stats.get("score_max"))
    bins = [{**head, "model_version": run.model_version, "bin": b, "bin_lo": lo, "bin_hi": hi,
             "count": int(bin_counts.get(b, 0))}
            for b, (lo, hi) in enumerate(edges)] if stats["rows_scored"] else []
    rules = sorted(rules, key=lambda r: (r["rule"], r["column_name"] or ""))
    logger.debug("summaries of %s: %s rows scored, %s quarantine rules", run.run_id, stats["rows_scored"],
                 len(rules))
    return {
        PREDICTION_STATS.name: pa.Table.from_pylist([stats_row], schema=arrow_schema(PREDICTION_STATS)),
        SCORE_BINS.name: pa.Table.from_pylist(bins, schema=arrow_schema(SCORE_BINS)),
        QUARANTINE_COUNTS.name: pa.Table.from_pylist([{**head, **r} for r in rules],
                                                     schema=arrow_schema(QUARANTINE_COUNTS)),
    }
