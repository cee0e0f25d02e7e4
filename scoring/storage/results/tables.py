"""Results tables, declared once for every results store.

Types are logical (string, float, int, date, timestamptz, ...); each store maps them to its SQL.
Partitioned tables are replaced per (day, model_name) in the publish transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # string | float | int8 | int32 | int64 | date | timestamptz | bool | json
    nullable: bool = True


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    partitioned: bool = True  # replaced per (day, model_name) on publish

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type_: str, nullable: bool = True) -> Column:
    return Column(name, type_, nullable)


# The columns of a staged prediction file, in order; any further staged column is a passthrough column (a
# source column listed in ``results.passthrough``, copied with its source type). ``label`` is set for binary
# models only; ``predicted_class`` for classifiers; ``probabilities`` (JSON {class: probability}) only when
# ``output.probabilities`` asks for it. Files staged before the model contract lack the last two (read as NULL).
STAGED_PREDICTION_COLUMNS = ("source_key", "score", "label", "predicted_class", "probabilities")


def predictions_spec(name: str) -> TableSpec:
    """The predictions table; its name comes from the configuration. Passthrough columns are added to the
    table when first published (they are not part of the spec); tables created before the model contract
    get ``predicted_class`` and ``probabilities`` appended by ``ensure_schema``, so insert by column name."""
    return TableSpec(name, (
        _c("source_key", "string", False), _c("score", "float", False), _c("label", "int8"),
        _c("predicted_class", "string"), _c("probabilities", "json"),
        _c("model_name", "string", False), _c("model_version", "int32", False), _c("run_id", "string", False),
        _c("day", "date", False), _c("scored_at", "timestamptz", False),
    ), primary_key=("day", "model_name", "source_key"))


RUNS = TableSpec("runs", (
    _c("run_id", "string", False), _c("day", "date", False), _c("model_name", "string", False),
    _c("model_version", "int32"), _c("status", "string", False), _c("rows_in", "int64"),
    _c("rows_rejected", "int64"), _c("rows_scored", "int64"), _c("started_at", "timestamptz", False),
    _c("finished_at", "timestamptz"), _c("duration_s", "float"), _c("error", "string"), _c("trigger", "string"),
    _c("details", "json"),
    # Reliability: what a run staged (rows_scored counts what it published), where it runs, when it was last alive.
    _c("rows_staged", "int64"), _c("host", "string"), _c("pid", "int64"), _c("heartbeat_at", "timestamptz"),
), primary_key=("run_id",), partitioned=False)

QUARANTINE = TableSpec("quarantine", (
    _c("run_id", "string", False), _c("day", "date", False), _c("model_name", "string", False),
    _c("source_key", "string"), _c("column_name", "string"), _c("rule", "string", False), _c("value", "string"),
    _c("row_json", "json"), _c("reason", "string"),
))

# Tables published with each run besides predictions and quarantine (later features add theirs here).
EXTRA_TABLES: dict[str, TableSpec] = {}

# Drift monitoring (scoring/quality/drift.py): PSI per feature and for the score ("__score__") of each run.
EXTRA_TABLES["drift"] = TableSpec("drift", (
    _c("run_id", "string", False), _c("day", "date", False), _c("model_name", "string", False),
    _c("model_version", "int32", False), _c("feature", "string", False), _c("psi", "float", False),
    _c("status", "string", False), _c("warn_at", "float"), _c("alert_at", "float"), _c("basis", "string"),
    _c("counts", "json"),
))


def all_tables(predictions_table: str) -> list[TableSpec]:
    return [predictions_spec(predictions_table), RUNS, QUARANTINE, *EXTRA_TABLES.values(),
            job_predictions_spec(predictions_table), *JOB_TABLES, *OUTCOME_TABLES]


# Per-(day, model) report summaries, computed from the staged chunks and published in the same transaction as
# the predictions (scoring/reports/summaries.py), so reports read O(days) rows, never the predictions.
PREDICTION_STATS = TableSpec("prediction_stats", (
    _c("day", "date", False), _c("model_name", "string", False), _c("model_version", "int32", False),
    _c("run_id", "string", False), _c("rows_scored", "int64", False), _c("rows_quarantined", "int64", False),
    _c("positives", "int64", False), _c("mean_score", "float"), _c("positive_rate", "float"),
    _c("score_p10", "float"), _c("score_p50", "float"), _c("score_p90", "float"),
    _c("score_min", "float"), _c("score_max", "float"),
    _c("task", "string"),  # binary | multiclass | regression; NULL in rows published before the model contract
))
SCORE_BINS = TableSpec("score_bins", (
    _c("day", "date", False), _c("model_name", "string", False), _c("model_version", "int32", False),
    _c("bin", "int32", False), _c("bin_lo", "float", False), _c("bin_hi", "float", False),
    _c("count", "int64", False),
))
QUARANTINE_COUNTS = TableSpec("quarantine_counts", (
    _c("day", "date", False), _c("model_name", "string", False), _c("rule", "string", False),
    _c("column_name", "string"), _c("count", "int64", False),
))
EXTRA_TABLES.update({s.name: s for s in (PREDICTION_STATS, SCORE_BINS, QUARANTINE_COUNTS)})

# Shadow scoring (scoring/run/shadow.py): the challengers' predictions of a (day, model) and their comparison
# with the champion's, published in the same transaction as the champion's predictions. Apart from the
# predictions table, so its readers and the report views see the champion only.
SHADOW_PREDICTIONS = TableSpec("shadow_predictions", (
    _c("source_key", "string", False), _c("score", "float", False), _c("label", "int8"),
    _c("predicted_class", "string"), _c("model_name", "string", False), _c("model_version", "int32", False),
    _c("champion_version", "int32", False), _c("run_id", "string", False), _c("day", "date", False),
    _c("scored_at", "timestamptz", False),
))
SHADOW_SUMMARY = TableSpec("shadow_summary", (
    _c("day", "date", False), _c("model_name", "string", False), _c("model_version", "int32", False),
    _c("champion_version", "int32", False), _c("run_id", "string", False), _c("rows", "int64", False),
    _c("rank_correlation", "float"), _c("top_decile_overlap", "float"), _c("mean_diff", "float"),
    _c("positive_rate_diff", "float"), _c("psi", "float"),
))
EXTRA_TABLES.update({s.name: s for s in (SHADOW_PREDICTIONS, SHADOW_SUMMARY)})

# On-demand jobs (scoring/run/jobs.py). Not replaced per (day, model): a job's rows are its own partition,
# replaced by job id in the job's publish transaction (``partitioned=False`` keeps them out of the daily
# publish, its reader export and its quarantine bounding). ``jobs`` is the jobs ledger, one row per job.
JOBS = TableSpec("jobs", (
    _c("job_id", "string", False), _c("state", "string", False), _c("engine", "string", False),
    _c("model_name", "string", False), _c("model_version", "int32"), _c("spec", "json", False),
    _c("submitted_at", "timestamptz", False), _c("started_at", "timestamptz"), _c("finished_at", "timestamptz"),
    _c("rows_in", "int64"), _c("rows_scored", "int64"), _c("rows_quarantined", "int64"),
    _c("chunks_done", "int64"), _c("chunks_total", "int64"), _c("output", "string"), _c("error", "string"),
    _c("run_id", "string"), _c("host", "string"), _c("pid", "int64"), _c("airflow_run_id", "string"),
    _c("cancel_requested", "bool"), _c("heartbeat_at", "timestamptz"), _c("details", "json"),
), primary_key=("job_id",), partitioned=False)


def job_predictions_spec(predictions_table: str) -> TableSpec:
    """``job_predictions``: the predictions table's columns plus ``job_id`` (the partition)."""
    base = predictions_spec(predictions_table)
    return TableSpec("job_predictions", (*base.columns, _c("job_id", "string", False)), partitioned=False)


# The quarantine table's columns plus ``job_id``: a job's rejected rows, replaced with the job's partition.
# Jobs keep their own table because the daily publish replaces quarantine per (day, model).
JOB_QUARANTINE = TableSpec("job_quarantine", (*QUARANTINE.columns, _c("job_id", "string", False)),
                           partitioned=False)
JOB_TABLES = (JOBS, JOB_QUARANTINE)


# Outcomes (scoring/run/outcomes.py, docs/outcomes.md): written by ``scoring outcomes``, not by a run, and
# replaced per (model_name, days of the window) in one transaction (``ResultsStore.replace_days``).
# ``outcomes``: one row per (scoring day, model, version): the version's published predictions joined to the
# labels that arrived, the task's metrics (``task_metrics``) and the estimate made before labels (CBPE, binary).
OUTCOMES = TableSpec("outcomes", (
    _c("day", "date", False), _c("model_name", "string", False), _c("model_version", "int32", False),
    _c("role", "string", False), _c("task", "string"), _c("rows_scored", "int64", False),
    _c("labelled", "int64", False), _c("coverage", "float"), _c("labels_quarantined", "int64", False),
    _c("metrics", "json"), _c("estimated", "json"), _c("status", "string"), _c("alerts", "json"),
    _c("labels_as_of", "timestamptz"), _c("computed_at", "timestamptz", False),
), partitioned=False)
# ``label_coverage``: per (observed day, model): labels observed that day, how many joined a prediction, how
# many belong to a quarantined row, how many to a key never scored (counted, never dropped silently).
LABEL_COVERAGE = TableSpec("label_coverage", (
    _c("day", "date", False), _c("model_name", "string", False), _c("labels", "int64", False),
    _c("joined", "int64", False), _c("quarantined", "int64", False), _c("unscored", "int64", False),
    _c("computed_at", "timestamptz", False),
), partitioned=False)
OUTCOME_TABLES = (OUTCOMES, LABEL_COVERAGE)
