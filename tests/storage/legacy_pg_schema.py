"""The PostgreSQL results schema as main created it before the model contract (commit ae2f593).

Captured by running that commit's ``create_sql`` and ``view_statements`` for every results table; kept as
literal SQL so the migration test starts from exactly what deployed databases hold. ``{schema}`` is the
quoted schema name.
"""

from __future__ import annotations

LEGACY_DDL = (
    'CREATE TABLE IF NOT EXISTS {schema}."predictions" ("source_key" text NOT NULL, "score" double precision NOT NULL, "label" smallint NOT NULL, "model_name" text NOT NULL, "model_version" integer NOT NULL, "run_id" text NOT NULL, "day" date NOT NULL, "scored_at" timestamptz NOT NULL, PRIMARY KEY ("day", "model_name", "source_key"))',
    'CREATE TABLE IF NOT EXISTS {schema}."runs" ("run_id" text NOT NULL, "day" date NOT NULL, "model_name" text NOT NULL, "model_version" integer, "status" text NOT NULL, "rows_in" bigint, "rows_rejected" bigint, "rows_scored" bigint, "started_at" timestamptz NOT NULL, "finished_at" timestamptz, "duration_s" double precision, "error" text, "trigger" text, "details" jsonb, PRIMARY KEY ("run_id"))',
    'CREATE TABLE IF NOT EXISTS {schema}."quarantine" ("run_id" text NOT NULL, "day" date NOT NULL, "model_name" text NOT NULL, "source_key" text, "column_name" text, "rule" text NOT NULL, "value" text, "row_json" jsonb)',
    'CREATE INDEX IF NOT EXISTS "quarantine_day_model_idx" ON {schema}."quarantine" (day, model_name)',
    'CREATE TABLE IF NOT EXISTS {schema}."drift" ("run_id" text NOT NULL, "day" date NOT NULL, "model_name" text NOT NULL, "model_version" integer NOT NULL, "feature" text NOT NULL, "psi" double precision NOT NULL, "status" text NOT NULL)',
    'CREATE INDEX IF NOT EXISTS "drift_day_model_idx" ON {schema}."drift" (day, model_name)',
    'CREATE TABLE IF NOT EXISTS {schema}."prediction_stats" ("day" date NOT NULL, "model_name" text NOT NULL, "model_version" integer NOT NULL, "run_id" text NOT NULL, "rows_scored" bigint NOT NULL, "rows_quarantined" bigint NOT NULL, "positives" bigint NOT NULL, "mean_score" double precision, "positive_rate" double precision, "score_p10" double precision, "score_p50" double precision, "score_p90" double precision, "score_min" double precision, "score_max" double precision)',
    'CREATE INDEX IF NOT EXISTS "prediction_stats_day_model_idx" ON {schema}."prediction_stats" (day, model_name)',
    'CREATE TABLE IF NOT EXISTS {schema}."score_bins" ("day" date NOT NULL, "model_name" text NOT NULL, "model_version" integer NOT NULL, "bin" integer NOT NULL, "bin_lo" double precision NOT NULL, "bin_hi" double precision NOT NULL, "count" bigint NOT NULL)',
    'CREATE INDEX IF NOT EXISTS "score_bins_day_model_idx" ON {schema}."score_bins" (day, model_name)',
    'CREATE TABLE IF NOT EXISTS {schema}."quarantine_counts" ("day" date NOT NULL, "model_name" text NOT NULL, "rule" text NOT NULL, "column_name" text, "count" bigint NOT NULL)',
    'CREATE INDEX IF NOT EXISTS "quarantine_counts_day_model_idx" ON {schema}."quarantine_counts" (day, model_name)',
    'DROP VIEW IF EXISTS {schema}."daily_summary"',
    'CREATE VIEW {schema}."daily_summary" AS SELECT day, model_name, model_version, rows_scored, rows_quarantined, CAST(rows_quarantined AS DOUBLE PRECISION) / NULLIF(rows_scored + rows_quarantined, 0) AS quarantined_share, mean_score, positive_rate, score_p10, score_p50, score_p90, score_min, score_max, positives, run_id FROM {schema}."prediction_stats"',
    'DROP VIEW IF EXISTS {schema}."score_histogram"',
    'CREATE VIEW {schema}."score_histogram" AS SELECT day, model_name, model_version, bin, bin_lo, bin_hi, "count", CAST("count" AS DOUBLE PRECISION) / NULLIF(SUM("count") OVER (PARTITION BY day, model_name), 0) AS share FROM {schema}."score_bins"',
    'DROP VIEW IF EXISTS {schema}."quarantine_summary"',
    'CREATE VIEW {schema}."quarantine_summary" AS SELECT day, model_name, rule, column_name, "count" FROM {schema}."quarantine_counts"',
    'DROP VIEW IF EXISTS {schema}."drift_summary"',
    'CREATE VIEW {schema}."drift_summary" AS SELECT day, model_name, model_version, feature, psi, status FROM {schema}."drift"',
    'DROP VIEW IF EXISTS {schema}."run_history"',
    'CREATE VIEW {schema}."run_history" AS SELECT run_id, day, model_name, model_version, status, rows_in, rows_rejected, rows_scored, started_at, finished_at, duration_s, error, "trigger", ROW_NUMBER() OVER (PARTITION BY day, model_name ORDER BY started_at DESC) = 1 AS is_latest FROM {schema}."runs"',
)

# A day of old rows: two predictions, its summaries and its run.
LEGACY_ROWS = (
    "INSERT INTO {schema}.runs VALUES ('old-run', '2026-03-06', 'loan_default', 1, 'success', 3, 1, 2, "
    "'2026-03-07 01:00+00', '2026-03-07 01:01+00', 60.0, NULL, 'cli', '{{}}')",
    "INSERT INTO {schema}.predictions VALUES ('k1', 0.25, 0, 'loan_default', 1, 'old-run', '2026-03-06', "
    "'2026-03-07 01:00+00'), ('k2', 0.75, 1, 'loan_default', 1, 'old-run', '2026-03-06', '2026-03-07 01:00+00')",
    "INSERT INTO {schema}.quarantine VALUES ('old-run', '2026-03-06', 'loan_default', 'k3', 'age', "
    "'expect_column_values_to_be_between', '200', '{{\"age\": 200}}')",
    "INSERT INTO {schema}.prediction_stats VALUES ('2026-03-06', 'loan_default', 1, 'old-run', 2, 1, 1, 0.5, "
    "0.5, 0.3, 0.5, 0.7, 0.25, 0.75)",
    "INSERT INTO {schema}.score_bins VALUES ('2026-03-06', 'loan_default', 1, 5, 0.25, 0.3, 1), "
    "('2026-03-06', 'loan_default', 1, 15, 0.75, 0.8, 1)",
)
