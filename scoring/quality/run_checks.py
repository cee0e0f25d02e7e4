"""What a run does for data quality before and after its chunks (called by ``scoring.run.pipeline``).

Before: load (or generate) the model version's suite, compile it, check the source schema under the
schema-drift policy, find duplicated keys of the interval, and build the picklable ``Gate``.
After: merge the chunks' counts, evaluate batch rules and the error threshold, check the staged outputs,
compute drift and write the ledger details; raise ``ValidationFailed`` if the run must not publish.

Data Docs are not built here: the details keep every rule's outcome (``validation.outcomes``), the batch
name and the suite's hash, so ``scoring.quality.data_docs.build_docs`` renders the pages later, from the
ledger (``scoring docs``, the report DAG), and a run never imports Great Expectations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from scoring.errors import SchemaError, ValidationFailed
from scoring.models.contract import contract_of
from scoring.models.signature import logical_type
from scoring.quality.batch_rules import evaluate
from scoring.quality.compile import CompiledSuite, Rule, compile_suite
from scoring.quality.drift import SCORE, drift_table, limits_for, merge_counts, psi_by_feature, status_of
from scoring.quality.gate import Gate, double_range_rule, interval_rule, merge_stats, nul_rule, special_rule
from scoring.quality.output_checks import check_predictions
from scoring.quality.schema_check import SchemaPlan, plan_schema
from scoring.quality.suite import NUMERIC_TYPE_LIST, load_suite, null_flood_rules, range_options, rekeyed

if TYPE_CHECKING:
    from scoring.config import Config
    from scoring.dates import DataInterval
    from scoring.models.store import ModelVersion
    from scoring.storage.results import RunRecord
    from scoring.storage.sources import Source
    from scoring.storage.staging import ChunkManifest

logger = logging.getLogger(__name__)

UNIQUE = "expect_column_values_to_be_unique"
BETWEEN = "expect_column_values_to_be_between"


@dataclass
class Quality:
    """The data quality side of one run, prepared before its chunks."""

    columns: list[str]
    gate: Gate
    rules: list[Rule]  # reporting order: the run's own rules, then the suite's
    suite: dict[str, Any]
    suite_path: Path
    suite_generated: bool
    plan: SchemaPlan
    source_columns: list[str]
    reference: dict[str, Any]
    task: str = "binary"
    timings: dict[str, float] = field(default_factory=dict)
    # the source columns the run needs: key, timestamp, the model's inputs, passthrough, columns of the rules
    read_columns: list[str] = field(default_factory=list)

    def duplicate_lists(self, limit: int = 100_000) -> dict[str, list[Any]]:
        """The uniqueness rules' duplicate values as JSON lists (what a run plan carries to its chunk tasks),
        for columns of integer or string type with at most ``limit`` duplicates; others are left out (a chunk
        then queries them)."""
        out = {}
        for column, values in self.gate.duplicates.items():
            kind = values.type
            if len(values) <= limit and (pa.types.is_integer(kind) or pa.types.is_string(kind)
                                         or pa.types.is_large_string(kind)):
                out[column] = values.to_pylist()
        return out


def _check_rule_columns(compiled: CompiledSuite, schema: pa.Schema, plan: SchemaPlan, path: Path) -> None:
    for rule in compiled.rules:
        if rule.column is None:
            continue
        if rule.column not in schema.names:
            raise SchemaError(f"expectation suite {str(path)!r}: {rule.type} is on column {rule.column!r}, "
                              "which the source does not have")
        if rule.type == BETWEEN and rule.column not in plan.casts:
            found = logical_type(schema.field(rule.column).type)
            if found not in ("integer", "float", "null"):
                raise SchemaError(f"expectation suite {str(path)!r}: {rule.type} needs a numeric column, "
                                  f"{rule.column!r} has type {found}")


def known_text_levels(mv: ModelVersion, reference: dict[str, Any], casts: dict[str, str]) -> dict[str, frozenset[str]]:
    """For each column cast to text: the levels the model knows (its signature's levels and the training
    reference's most frequent ones); ``gate.number_text`` refuses a cast that spells one of them differently."""
    inputs = {i["name"]: i for i in (mv.meta.get("signature") or {}).get("inputs", [])}
    out: dict[str, frozenset[str]] = {}
    for column, target in casts.items():
        if target != "string":
            continue
        levels = {str(v) for v in inputs.get(column, {}).get("levels") or []}
        levels |= {str(v) for v in (reference.get("features", {}).get(column) or {}).get("levels") or []}
        if levels:
            out[column] = frozenset(levels)
    return out


def prepare_quality(cfg: Config, mv: ModelVersion, source: Source, interval: DataInterval | None,
                    suite_key: str | None = None, *, duplicates: dict[str, list[Any]] | None = None) -> Quality:
    """Everything checked before scoring; raises SchemaError/SuiteError naming the problem.

    Args:
        cfg: the configuration (``validation`` section, key and timestamp columns).
        mv: the model version being scored.
        source: the open source.
        interval: the run's data interval; None for an on-demand job (every input row is in scope, so
            there is no interval rule).
        suite_key: the configured key column, when ``cfg.source.key_column`` is a job's own key (``--key``):
            the version's suite is read (or generated and written) for the configured key, and the job's key
            rules are derived from it in memory (``rekeyed``), never written.
        duplicates: the values occurring more than once in the interval per column of a uniqueness rule, as
            the run plan found them (``Quality.duplicate_lists``); a column missing here is queried from the
            source over the whole interval.
    """
    started = time.perf_counter()
    vcfg, key, ts = cfg.validation, cfg.source.key_column, cfg.source.timestamp_column
    path, suite, generated = load_suite(vcfg.suites_dir, mv, suite_key or key, require=vcfg.require_suite,
                                        **range_options(cfg))
    suite = rekeyed(suite, suite_key or key, key)
    compiled = compile_suite(suite, path)
    schema = source.schema()
    plan = plan_schema(schema, mv.features, key, expected=compiled.types, required=compiled.required,
                       policy=vcfg.schema_drift, timestamp_column=ts, text_columns=source.text_columns)
    _check_rule_columns(compiled, schema, plan, path)
    own: list[Rule] = []
    if interval is not None and ts in schema.names and (pa.types.is_timestamp(schema.field(ts).type) or pa.types.is_date(schema.field(ts).type)):
        own.append(interval_rule(ts, *source.interval_bounds(interval)))  # naive columns: local wall time
    for column in sorted(source.double_range_columns & {*plan.columns, *cfg.results.passthrough}):
        own.append(double_range_rule(column))
    for column in sorted(source.special_columns & {*plan.columns, *cfg.results.passthrough}):
        own.append(special_rule(column))
    for column in dict.fromkeys([key, *cfg.results.passthrough]):
        if column in schema.names and logical_type(schema.field(column).type) == "string":
            own.append(nul_rule(column))
    flood = null_flood_rules(mv, compiled.rules, key, vcfg.null_flood_margin)  # older suites lack the rule
    cast_rules: dict[str, str] = {}
    for column in plan.casts:
        rule = compiled.type_rule(column)
        if rule is None:
            rule = Rule(f"type:{column}", "expect_column_values_to_be_in_type_list",
                        {"column": column, "type_list": NUMERIC_TYPE_LIST if plan.casts[column] == "float64"
                         else ["str"]}, "critical", "run")
            own.append(rule)
        cast_rules[column] = rule.id
    typed = [r for r in compiled.row_rules if r.id in cast_rules.values()]
    row_rules = [*own, *typed, *(r for r in compiled.row_rules if r not in typed)]
    known = duplicates or {}
    duplicates = {r.column: pa.array(known[r.column], schema.field(r.column).type) if r.column in known
                  else source.duplicate_values(interval, r.column) for r in compiled.row_rules if r.type == UNIQUE}
    nulls = tuple(dict.fromkeys([*(r.column for r in compiled.batch_rules if r.column),
                                 *(r.column for r in flood)]))
    reference = mv.meta.get("reference") or {}
    drift = {n: ref for n, ref in reference.get("features", {}).items() if n in plan.columns[1:]}
    if (reference.get("score") or {}).get("kind") == "numeric":
        drift[SCORE] = reference["score"]
    keep: dict[str, pa.Table] = {}
    if vcfg.duplicate_keys == "keep_latest" and len(duplicates.get(key, [])) and ts in schema.names:
        keep[key] = source.latest_of_duplicates(interval, key, ts)
    elif vcfg.duplicate_keys == "keep_latest" and len(duplicates.get(key, [])):
        logger.warning("validation.duplicate_keys is keep_latest but the source has no timestamp column %r: "
                       "every row of a duplicated key is quarantined", ts)
    gate = Gate(key, tuple(row_rules), dict(plan.casts), cast_rules, duplicates, nulls, drift, keep,
                ts if keep else None, text_levels=known_text_levels(mv, reference, plan.casts))
    missing = [c for c in cfg.results.passthrough if c not in schema.names]
    if missing:
        raise SchemaError(f"results.passthrough column(s) {', '.join(map(repr, missing))} are not in the source")
    quality = Quality(plan.columns, gate, [*own, *flood, *compiled.rules], suite, path, generated, plan,
                      list(schema.names), reference, contract_of(mv.meta).task)
    quality.read_columns = [c for c in dict.fromkeys([
        *plan.columns, *([ts] if ts in schema.names else []), *cfg.results.passthrough,
        *(r.column for r in row_rules if r.column), *nulls]) if c in schema.names]
    quality.timings["prepare_s"] = time.perf_counter() - started
    return quality


def batch_name(cfg: Config, day: Any) -> str:
    """What Data Docs show as the validated batch: the source table (or ``query``) and the day."""
    name = cfg.source.table or "query"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}__{day}")


def suite_sha256(suite: dict[str, Any]) -> str:
    """A hash of the suite's content (key order ignored), to tell later whether the file was edited."""
    return hashlib.sha256(json.dumps(suite, sort_keys=True, default=str).encode()).hexdigest()


def conclude_quality(cfg: Config, run: RunRecord, quality: Quality, manifests: list[ChunkManifest],
                     prediction_files: list[Path], previous_counts: Sequence[dict[str, list[int]]] = ()
                     ) -> dict[str, pa.Table]:
    """Judge the whole interval after its chunks; fill ``run.details``.

    ``previous_counts`` are the drift counts of the previous business days of the drift window
    (``validation.drift.window_days`` - 1 of them at most, same model version), pooled with this run's.

    Returns:
        Extra tables to publish with the run (``drift``). Raises ValidationFailed (after writing the
        details) when a blocking rule, the error threshold or an output check fails.
    """
    started = time.perf_counter()
    stats = merge_stats([m.stats.get("gate", {}) for m in manifests])
    report = evaluate(quality.rules, stats, run.rows_in, run.rows_rejected, cfg.validation.error_threshold,
                      quality.source_columns)
    report.failures.extend(check_predictions(prediction_files, run.rows_scored, quality.task))
    counts = merge_counts([m.stats.get("drift", {}) for m in manifests])
    pooled = merge_counts([*previous_counts, counts]) if previous_counts else counts
    psi = psi_by_feature(quality.reference, pooled, None if previous_counts else run.rows_scored)
    vcfg = cfg.validation
    baseline = quality.reference.get("baseline")
    limits = {n: limits_for(n, baseline, vcfg) for n in psi}
    table = drift_table(run.run_id, run.day, run.model_name, run.model_version, psi, limits, counts)
    flagged = {n: round(v, 4) for n, v in psi.items()
               if limits[n].basis != "excluded" and status_of(v, limits[n].warn, limits[n].alert) != "ok"}
    for name, value in flagged.items():
        logger.warning("drift: %s PSI %.3f (%s; %s thresholds warn %.3g, alert %.3g)",
                       "score" if name == SCORE else name, value,
                       status_of(value, limits[name].warn, limits[name].alert), limits[name].basis,
                       limits[name].warn, limits[name].alert)
    for warning in report.warnings:
        logger.warning("data quality: %s", warning)
    quality.timings["gate_s"] = stats["gate_s"]
    quality.timings["drift_s"] = sum(m.stats.get("drift_s", 0.0) for m in manifests)
    quality.timings["conclude_s"] = time.perf_counter() - started
    run.details.update({
        "suite": str(quality.suite_path), "suite_generated": quality.suite_generated,
        "suite_sha256": suite_sha256(quality.suite),
        "validation": {**report.details(), "outcomes": report.outcome_records(),
                       "batch": batch_name(cfg, run.day)},
        "schema": {"cast": quality.plan.casts, "ignored_columns": quality.plan.ignored,
                   "warnings": quality.plan.warnings},
        "drift": {"psi_warn": vcfg.psi_warn, "psi_alert": vcfg.psi_alert, "method": vcfg.drift.method,
                  "window_days": vcfg.drift.window_days, "days_pooled": 1 + len(previous_counts),
                  "flagged": flagged},
    })
    run.details["timings"] = {k: round(v, 4) for k, v in quality.timings.items()}
    if not report.success:
        raise ValidationFailed("data quality: " + "; ".join(report.failures))
    return {"drift": table}
