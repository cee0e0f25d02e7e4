"""Shadow scoring: the configured challengers (``model.challengers``) score the champion's gated rows of
every run; their predictions and a comparison with the champion are published in the run's transaction.

A challenger is staged in ``<run stage>/shadow-v<version>/`` (chunk files like the champion's), scored on
the rows the champion's data quality gate let through (drift counts are the champion's only), with its own
contract and no passthrough columns. A challenger that cannot be resolved, loaded or read from the source,
or fails while scoring, never fails the champion's day: it is left out of the publish and the run's ledger
details say why (``details.shadow``), which the promotion gate's shadow check reads.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from scoring.config import Config
from scoring.errors import ModelStoreError, first_line
from scoring.models.compare import compare_scores
from scoring.models.contract import contract_of
from scoring.models.scorer import ScoreSpec
from scoring.models.store import ModelStore, ModelVersion, load_version
from scoring.quality.gate import Gate
from scoring.quality.schema_check import check_schema
from scoring.run.chunks import run_chunks
from scoring.storage.results.tables import SHADOW_PREDICTIONS, SHADOW_SUMMARY
from scoring.storage.stagefs import as_location
from scoring.storage.staging import ChunkManifest, Stage

logger = logging.getLogger(__name__)


@dataclass
class Shadow:
    """The challengers of one run: what each staged, and why any was left out."""

    staged: dict[int, list[ChunkManifest]] = field(default_factory=dict)
    tasks: dict[int, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # challenger (version or alias) -> one-line reason

    def details(self) -> dict[str, Any]:
        """``details.shadow`` of the run ledger: per challenger ``{"status": scored|failed, ...}``; a scored
        challenger's own gate results too: ``rows_in``, ``quarantined`` (the rows it did not score: the
        champion's gate and its own model errors) and ``rules`` (gate rule id or ``rule:column`` -> rows)."""
        out: dict[str, Any] = {}
        for v, ms in self.staged.items():
            rules: dict[str, int] = {}
            for m in ms:
                for part in ((m.stats.get("gate") or {}).get("unexpected") or {}, m.stats.get("refused") or {}):
                    for rule, n in part.items():
                        rules[rule] = rules.get(rule, 0) + int(n if isinstance(n, int | float) else 0)
            out[str(v)] = {"status": "scored", "rows": sum(m.scored for m in ms),
                           "rows_in": sum(m.rows_in for m in ms), "quarantined": sum(m.rejected for m in ms),
                           "rules": {k: n for k, n in rules.items() if n}}
        out.update({k: {"status": "failed", "error": e} for k, e in self.failed.items()})
        return out


def resolve_challengers(cfg: Config, champion: int) -> tuple[list[ModelVersion], dict[str, str]]:
    """The versions ``model.challengers`` name (a version number or an alias), the champion and repeats left
    out; and the entries that could not be resolved, with the one-line reason."""
    store = ModelStore(cfg.model.store)
    found: list[ModelVersion] = []
    failed: dict[str, str] = {}
    for entry in cfg.model.challengers:
        try:
            mv = store.get(cfg.model.name, int(entry)) if entry.isdigit() else \
                store.resolve(cfg.model.name, entry)
        except ModelStoreError as exc:
            failed[entry] = str(exc)
            logger.warning("challenger %s left out: %s", entry, exc)
            continue
        if mv.version == champion or any(f.version == mv.version for f in found):
            logger.info("challenger %s is version %s, already scored in this run", entry, mv.version)
            continue
        found.append(mv)
    return found, failed


def shadow_stage(stage: Stage, version: int) -> Stage:
    """Where challenger ``version``'s chunks of the run staged in ``stage`` go."""
    return Stage(stage.root / f"shadow-v{version}")


def shadow_spec(cfg: Config, mv: ModelVersion) -> ScoreSpec:
    """How a challenger scores: its own contract, the configured threshold, no probabilities or passthrough."""
    return ScoreSpec(cfg.source.key_column, contract_of(mv.meta), cfg.model.threshold)


def shadow_gate(gate: Gate) -> Gate:
    """The champion's gate without drift counts: the same rows pass, drift stays the champion's."""
    return dataclasses.replace(gate, drift={})


def prepare_challenger(cfg: Config, mv: ModelVersion, schema: pa.Schema) -> Any:
    """Check the source has the challenger's columns and load it. Raises SchemaError or ModelStoreError."""
    check_schema(schema, mv.features, cfg.source.key_column)
    return ModelStore(cfg.model.store).load(mv)


def score_challengers(cfg: Config, challengers: tuple[int, ...], failed: dict[str, str] | None, schema: pa.Schema,
                      batches: Callable[[], Iterator[pa.RecordBatch]], gate: Gate, stage: Stage) -> Shadow:
    """Score every challenger the run plan lists over the run's batches (read again per challenger) and
    stage them (an in-process run; the DAG scores a challenger chunk by chunk, ``plan.stage_ranges``).

    Args:
        cfg: the loaded configuration.
        challengers: the plan's challenger versions (``RunPlan.challengers``: resolved once, by the plan
            maker, with ``resolve_challengers``).
        failed: the challengers the plan left out, with the reason (``RunPlan.shadow_failed``).
        schema: the source schema.
        batches: returns the run's source batches, in the same order as the champion's.
        gate: the champion's gate (the same rows pass; failed rows are the champion's quarantine).
        stage: the run's stage; each challenger stages under ``shadow-v<version>/``.

    Returns:
        What was staged per challenger version, and the challengers left out with the reason.
    """
    shadow = Shadow(failed=dict(failed or {}))
    store = ModelStore(cfg.model.store)
    for version in challengers:
        try:
            mv = store.get(cfg.model.name, version)
            model = prepare_challenger(cfg, mv, schema)
            loader = functools.partial(load_version, cfg.model.store, mv.name, mv.version)
            shadow.staged[mv.version] = run_chunks(batches(), model, loader, shadow_spec(cfg, mv),
                                                   shadow_stage(stage, mv.version), workers=cfg.workers,
                                                   gate=shadow_gate(gate))
            shadow.tasks[mv.version] = contract_of(mv.meta).task
            logger.info("challenger v%s: %s rows shadow-scored", mv.version,
                        sum(m.scored for m in shadow.staged[mv.version]))
        except Exception as exc:  # noqa: BLE001 - a challenger never fails the champion's day
            shadow.failed[str(version)] = first_line(exc)
            logger.warning("challenger v%s left out of this run: %s", version, first_line(exc))
    return shadow



def _read(files: list[Path], columns: list[str]) -> pa.Table:
    if not files:
        return pa.table({c: pa.array([], t) for c, t in zip(columns, (pa.string(), pa.float64(), pa.int8(),
                                                                       pa.string()), strict=False)})
    return pa.concat_tables([as_location(f).parquet().read(columns=columns) for f in files],
                            promote_options="default")


def shadow_tables(run: Any, stage: Stage, champion: list[ChunkManifest], shadow: Shadow | None,
                  champion_task: str) -> dict[str, pa.Table]:
    """The ``shadow_predictions`` and ``shadow_summary`` rows of the run (empty without challengers, so a
    publish always replaces the day's shadow partition). Reads the staged files of the champion and of each
    challenger (held in memory: a day's keys and scores per challenger).

    Args:
        run: the run's ledger record (day, model name and version, run id, start time).
        stage: the run's stage.
        champion: the champion's manifests.
        shadow: what the challengers staged (None: no challengers).
        champion_task: binary, multiclass or regression (positive rate difference for binary pairs only).
    """
    predictions, summaries = [], []
    columns = ["source_key", "score", "label", "predicted_class"]
    base = _read(stage.prediction_files(champion), columns[:3]).to_pandas() if shadow and shadow.staged else None
    for version, manifests in sorted((shadow.staged if shadow else {}).items()):
        rows = _read(shadow_stage(stage, version).prediction_files(manifests), columns)
        n = rows.num_rows
        consts = {"model_name": pa.array([run.model_name] * n, pa.string()),
                  "model_version": pa.array([version] * n, pa.int32()),
                  "champion_version": pa.array([run.model_version] * n, pa.int32()),
                  "run_id": pa.array([run.run_id] * n, pa.string()), "day": pa.array([run.day] * n, pa.date32()),
                  "scored_at": pa.array([run.started_at] * n, pa.timestamp("us", tz="UTC"))}
        predictions.append(pa.table({**{c: rows.column(c) for c in columns}, **consts}).select(
            SHADOW_PREDICTIONS.column_names))
        joined = base.merge(rows.select(columns[:3]).to_pandas(), on="source_key", suffixes=("", "_c"))
        binary = champion_task == shadow.tasks.get(version) == "binary"
        stats = compare_scores(joined["source_key"].to_numpy(dtype=object), joined["score"].to_numpy(np.float64),
                               joined["score_c"].to_numpy(np.float64),
                               joined["label"].to_numpy(np.float64) if binary else None,
                               joined["label_c"].to_numpy(np.float64) if binary else None)
        summaries.append({"day": run.day, "model_name": run.model_name, "model_version": version,
                          "champion_version": run.model_version, "run_id": run.run_id, **stats})
    schema = pa.schema([(c.name, _ARROW[c.type]) for c in SHADOW_PREDICTIONS.columns])
    summary_schema = pa.schema([(c.name, _ARROW[c.type]) for c in SHADOW_SUMMARY.columns])
    return {SHADOW_PREDICTIONS.name: pa.concat_tables([t.cast(schema) for t in predictions])
            if predictions else schema.empty_table(),
            SHADOW_SUMMARY.name: pa.Table.from_pylist(summaries, summary_schema)}


_ARROW = {"string": pa.string(), "float": pa.float64(), "int8": pa.int8(), "int32": pa.int32(),
          "int64": pa.int64(), "date": pa.date32(), "timestamptz": pa.timestamp("us", tz="UTC")}
