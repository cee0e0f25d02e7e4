"""A run split into steps a scheduler can retry one by one: plan -> validate -> score chunks -> publish.

The plan is a frozen ``RunPlan`` (``runplan.py``; it travels between tasks as an XCom through ``to_json`` /
``from_json``, and every step here takes either). Its chunks are key ranges of the interval's
rows, cut once at plan time, so a retried chunk re-reads exactly the same rows; a chunk reads its range as a
stream of batches through the one chunk loop (``run_chunks``), each batch staged as a part of the chunk while
the next is read (``stage_ranges``). Chunk outputs are staged
under ``<staging_dir>/<model>/<day>/<run key>/<plan id>/``: a retried or cleared run with the same plan
reuses the chunks already staged and verified, and a different plan (another model version, another
chunk size) can never mix with them. Only ``publish_plan`` and ``record_outcome`` write to the results
database; the publish step is the one ``pipeline.run_interval`` ends with (``finish_run``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from scoring.config import Config
from scoring.dates import DataInterval
from scoring.errors import (
    ConfigError,
    ModelStoreError,
    SchemaError,
    ScoringError,
    Superseded,
    ValidationFailed,
    first_line,
)
from scoring.models.scorer import ScoreSpec
from scoring.models.store import ModelStore
from scoring.quality.run_checks import Quality, prepare_quality
from scoring.quality.schema_check import check_schema
from scoring.run.chunks import run_chunks
from scoring.run.model_choice import load_scorer
from scoring.run.pipeline import finish_run, record_failure, score_spec, start_record
from scoring.run.planner import plan_run as plan_run  # the plan step; every plan is made in planner
from scoring.run.runplan import RunPlan
from scoring.run.shadow import (
    Shadow,
    prepare_challenger,
    shadow_gate,
    shadow_spec,
    shadow_stage,
)
from scoring.storage.faults import fault_point
from scoring.storage.results import ResultsStore, RunRecord, open_results
from scoring.storage.sources import open_source
from scoring.storage.sources.base import KeyRange
from scoring.storage.stagefs import staging_root
from scoring.storage.staging import ChunkManifest, Stage, part_index, remove_stale

logger = logging.getLogger(__name__)

TRIGGER = "airflow"
# Errors that a retry cannot fix: a wrong config, schema or model, or a failed quality rule.
PERMANENT = (ConfigError, SchemaError, ModelStoreError, ValidationFailed)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help (source or results unreachable, locks, I/O), as opposed to a user mistake."""
    return not isinstance(exc, PERMANENT)


PlanLike = RunPlan | dict[str, Any]  # a plan, or its JSON (an XCom)


def plan_interval(plan: PlanLike) -> DataInterval | None:
    """The data interval a plan covers (None for a job's plan)."""
    return RunPlan.from_json(plan).interval


def run_folder(cfg: Config, plan: PlanLike) -> Stage:
    """Everything staged for the plan's scheduler run (every plan of it)."""
    plan = RunPlan.from_json(plan)
    return Stage(staging_root(cfg.results) / plan.model.name / plan.day.isoformat() / plan.run_key)


def plan_stage(cfg: Config, plan: PlanLike) -> Stage:
    """Where the plan's chunks are staged."""
    return Stage(run_folder(cfg, plan).root / RunPlan.from_json(plan).plan_id)


def _spec_and_model(cfg: Config, plan: RunPlan, schema: pa.Schema) -> tuple[ScoreSpec, Any, dict[str, Any]]:
    """The champion's spec, its model loaded for the plan's engine, and the engine details."""
    store = ModelStore(cfg.model.store)
    mv = store.get(plan.model.name, plan.model.version)
    check_schema(schema, mv.features, cfg.source.key_column)
    model, engine = load_scorer(store, mv, plan.engine)
    return score_spec(cfg, mv), model, engine


def _quality(cfg: Config, plan: RunPlan, source: Any) -> Quality:
    """The run's data quality state (suite, schema-drift policy, the interval's duplicate keys), the same
    the CLI builds, so every chunk passes the same gate and publish concludes the same checks."""
    mv = ModelStore(cfg.model.store).get(plan.model.name, plan.model.version)
    known = plan.quality_inputs  # absent from plans made before it existed: queried then
    return prepare_quality(cfg, mv, source, plan.interval, duplicates=known.duplicates if known else None)


def _read_columns(plan: RunPlan, source: Any, quality: Quality) -> None:
    """Select the columns a chunk reads, with the text widths the plan measured (no whole-interval query)."""
    source.select_columns(quality.read_columns)
    if plan.quality_inputs is not None:
        source.know_text_widths(plan.interval, plan.quality_inputs.text_widths)


def validate_plan(cfg: Config, plan: PlanLike) -> list[int | dict[str, int]]:
    """Check what every chunk relies on before fanning out: the source columns match the model's feature
    schema, the artifact verifies and loads. Returns the chunks to score: the champion's indexes, then
    ``{"challenger": version, "index": i}`` for each chunk of each challenger (checked by its own task)."""
    plan = RunPlan.from_json(plan)
    with open_source(cfg.source) as source:
        _spec_and_model(cfg, plan, source.schema())
        _quality(cfg, plan, source)
    shadow = [{"challenger": v, "index": i} for v in plan.challengers or () for i in plan.indexes]
    return [*plan.indexes, *shadow]


def score_planned_chunk(cfg: Config, plan: PlanLike, index: int | dict[str, int]) -> dict[str, Any]:
    """Score and stage chunk ``index`` of ``plan``; a chunk already staged and verified is reused as is.

    ``index`` may be a challenger's chunk, ``{"challenger": version, "index": i}``: the same rows through the
    champion's gate, scored by the challenger and staged apart. A challenger's chunk that fails on anything
    but a transient error returns ``{"challenger", "index", "error"}`` instead of raising, so a broken
    challenger never fails the champion's run (publish leaves it out and says why).

    Never writes to the results database. Returns the chunk's summary (``_chunk_dict``) with ``reused``.
    """
    if isinstance(index, dict):
        return stage_ranges(cfg, plan, [int(index["index"])], int(index["challenger"]))[0]
    return stage_ranges(cfg, plan, [index])[0]


def stage_plan(cfg: Config, plan: PlanLike) -> list[dict[str, Any]]:
    """Score and stage every chunk of ``plan`` in this process, one after the other: what the DAG's mapped
    ``score_chunk`` tasks do, with one source connection, one model load and one quality state for the day;
    then each challenger's chunks. Never writes to the results database (``publish_plan`` does): the parallel
    backfill's worker processes run this and the parent publishes.

    Returns:
        The chunks' summaries with ``reused`` (and the challengers' results), as ``publish_plan`` takes them.
    """
    plan = RunPlan.from_json(plan)
    done = stage_ranges(cfg, plan, plan.indexes, reread=True)
    shadow = [r for v in plan.challengers or () for r in stage_ranges(cfg, plan, plan.indexes, v, reread=True)]
    logger.info("plan %s staged: %s chunks (%s reused), %s rows in", plan.plan_id, len(done),
                sum(1 for d in done if d["reused"]), sum(d["rows_in"] for d in done))
    return [*done, *shadow]


def stage_ranges(cfg: Config, plan: PlanLike, indexes: list[int], challenger: int | None = None,
                 reread: bool = False) -> list[dict[str, Any]]:
    """Stage chunks ``indexes`` of ``plan`` (the champion's, or challenger version ``challenger``'s) through
    the one chunk loop (``run_chunks``): each chunk reads only its key range, as a stream of batches of
    ``plan.read_rows`` rows (one query), each batch scored and staged as a part of the chunk while the next
    one is read in the background (the CLI's prefetch); with the quality inputs the plan measured for the
    whole interval. A part already staged from the same rows (``input_digest``) is reused, so a rerun never
    publishes rows it did not read; the chunk's manifest listing its parts (``Stage.write_parts``) is
    written last.

    A DAG task (``reread`` False) reuses a chunk its plan already staged without reading it again (a retried
    task of the same plan); ``reread`` (a backfill day's rerun) reads every range and reuses a staged part
    only when its rows hash the same. A challenger's chunk failing on anything but a transient error gives
    ``{"challenger", "index", "error"}`` per chunk instead of raising. Returns one dict per chunk
    (``_chunk_dict``: its rows, parts and ``reused``, and ``challenger``).
    """
    plan = RunPlan.from_json(plan)
    stage = plan_stage(cfg, plan) if challenger is None else shadow_stage(plan_stage(cfg, plan), challenger)
    tag = {} if challenger is None else {"challenger": challenger}
    done = {i: None if reread else stage.completed_chunk(i) for i in indexes}
    todo = [i for i in indexes if done[i] is None]
    if not todo:
        logger.info("chunks %s of plan %s are already staged; reusing them", indexes, plan.plan_id)
        return [{**_chunk_dict(i, done[i], True), **tag} for i in indexes]
    started = time.perf_counter()
    folder = run_folder(cfg, plan)
    folder.lock(shared=True)  # while it stages (or until its process dies), cleanup leaves the folder alone
    reused: set[int] = set()
    try:
        with open_source(cfg.source) as source, ThreadPoolExecutor(1, thread_name_prefix="range-read") as ahead:
            full = source.schema()
            quality = _quality(cfg, plan, source)
            interval, batch_rows = plan.interval, plan.read_rows or plan.rows_per_chunk

            def batches(i: int) -> Iterator[pa.RecordBatch]:
                chunk = plan.chunks[i]
                return source.range_batches(interval, KeyRange(chunk.lo, chunk.hi, chunk.nulls), batch_rows)

            first: Future[pa.RecordBatch | None] | None = None
            if challenger is None:
                _read_columns(plan, source, quality)
                schema = source.read_schema()  # before the read starts: one thread uses the source at a time
                stream = batches(todo[0])
                # The first batch is read while the model loads (a fresh task process imports scikit-learn and
                # unpickles the model: seconds); the chunk loop reads each next batch while it scores one.
                first = ahead.submit(next, stream, None)
                spec, model, _ = _spec_and_model(cfg, plan, full)
                gate = quality.gate
            else:  # a challenger reads the columns it needs, through the champion's gate
                mv = ModelStore(cfg.model.store).get(plan.model.name, challenger)
                model, spec, gate = prepare_challenger(cfg, mv, full), shadow_spec(cfg, mv), shadow_gate(quality.gate)
                schema = source.read_schema()
                stream = batches(todo[0])

            prepared = time.perf_counter()  # source opened, quality state, model loaded: the task's fixed cost
            for n, i in enumerate(todo):
                if n == 0 and first is not None:
                    head = first.result()
                    parts = itertools.chain(() if head is None else (head,), stream)
                else:
                    parts = stream if n == 0 else batches(i)
                manifests = run_chunks(_at_least_one(parts, schema), model, lambda: model, spec, stage,
                                       gate=gate, indexes=(part_index(i, p) for p in itertools.count()))
                stage.write_parts(i, manifests)
                done[i] = manifests
                if all(m.index in stage.reused for m in manifests):
                    reused.add(i)
                fault_point(f"after_chunk_{i}")  # the chunk staged, as the CLI's (the kill tests)
    except Exception as exc:
        if challenger is None or is_transient(exc):  # an outage or a lock: the task retries
            raise
        logger.warning("challenger v%s, chunks %s of plan %s: %s", challenger, todo, plan.plan_id, exc)
        return [{**tag, "index": i, "error": first_line(exc)} for i in indexes]
    finally:
        folder.unlock()  # a failed task stops its lease renewal too (dag.test runs tasks in one process)
    for i in todo:
        summary = _chunk_dict(i, done[i], i in reused)
        logger.info("chunk %s of plan %s%s: %s rows in %s parts, %s scored, %s quarantined", i, plan.plan_id,
                    f" (challenger v{challenger})" if challenger else "", summary["rows_in"], summary["parts"],
                    summary["scored"], summary["rejected"])
    # Seconds spent here before the first row is read, and in total (benchmarks/bench_celery_workers.py).
    timing = {"prepare_s": round(prepared - started, 4), "stage_s": round(time.perf_counter() - started, 4)}
    return [{**_chunk_dict(i, done[i], i not in todo or i in reused), **tag, **timing} for i in indexes
            if done[i] is not None]


def _at_least_one(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``batches``, or one empty batch of ``schema`` when there are none: an empty key range still stages a
    (0-row) part, so every chunk of a plan has a manifest and publish sees the day's empty chunks."""
    empty = True
    for batch in batches:
        empty = False
        yield batch
    if empty:
        yield pa.RecordBatch.from_pylist([], schema=schema)


def _chunk_dict(index: int, parts: list[ChunkManifest] | None, reused: bool) -> dict[str, Any]:
    """What a chunk task returns (its XCom): the chunk's index, its rows in, scored and quarantined summed
    over its parts, the number of parts, a digest of the parts' prediction files, the engine that scored them
    (``stats.engine``) and ``reused``. Publish reads the staged manifests themselves, not this."""
    parts = parts or []
    engines = {m.stats.get("engine") for m in parts if m.stats.get("engine")}
    return {"index": index, "rows_in": sum(m.rows_in for m in parts), "scored": sum(m.scored for m in parts),
            "rejected": sum(m.rejected for m in parts), "parts": len(parts),
            "predictions_sha256": hashlib.sha256("".join(m.predictions_sha256 for m in parts).encode()).hexdigest(),
            "stats": {"engine": engines.pop() if len(engines) == 1 else "mixed" if engines else None},
            "reused": reused}


def _shadow(cfg: Config, plan: RunPlan, chunk_results: list[dict[str, Any]]) -> Shadow | None:
    """What the plan's challengers staged; a challenger missing a chunk is left out with the reason."""
    if not plan.challengers and not plan.shadow_failed:
        return None
    shadow = Shadow(failed=dict(plan.shadow_failed or {}))
    errors = {r["challenger"]: r["error"] for r in chunk_results if "challenger" in r and r.get("error")}
    store = ModelStore(cfg.model.store)
    for version in plan.challengers or ():
        stage = shadow_stage(plan_stage(cfg, plan), version)
        chunks = [stage.completed_chunk(i) for i in plan.indexes]
        if version in errors or any(c is None for c in chunks):
            shadow.failed[str(version)] = errors.get(version) or "chunks not staged"
            continue
        shadow.staged[version] = [m for c in chunks for m in c or []]
        shadow.tasks[version] = score_spec(cfg, store.get(plan.model.name, version)).contract.task
    return shadow


def _counts(run: RunRecord, plan: RunPlan, **more: Any) -> dict[str, Any]:
    return {"run_id": run.run_id, "day": run.day.isoformat(), "model_name": run.model_name,
            "model_version": run.model_version, "rows_in": run.rows_in, "rows_scored": run.rows_scored,
            "rows_rejected": run.rows_rejected, "plan_id": plan.plan_id, **more}


def _published_run(results: ResultsStore, plan: RunPlan) -> dict[str, Any] | None:
    """The successful ledger row of ``plan``, if it was already published."""
    for row in reversed(results.successful_runs(plan.model.name, plan.day, plan.day)):
        if json.loads(row["details"] or "{}").get("plan_id") == plan.plan_id:
            return row
    return None


def publish_plan(cfg: Config, plan: PlanLike, chunk_results: list[dict[str, Any]] | None = None,
                 trigger: str = TRIGGER, *, results: ResultsStore | None = None) -> dict[str, Any]:
    """Publish every staged chunk of ``plan`` in one transaction, record the ledger, remove the stage.

    Runs the same steps as the end of ``pipeline.run_interval`` (``finish_run``). Publishing a plan that is
    already published (a retry after a lost task heartbeat) returns the recorded counts and writes nothing.

    Args:
        cfg: the loaded configuration.
        plan: from ``plan_run``.
        chunk_results: the chunk tasks' manifests, to count the chunks reused from an earlier attempt.
        trigger: recorded in the ledger (``airflow``; ``backfill`` for a parallel backfill's days).
        results: the open results store to publish into (default: ``cfg.results``, opened here).

    Returns:
        Counts for the asset event and XCom: run id, day, model name and version, rows in/scored/rejected.
    """
    fault_point("publish_start")
    plan = RunPlan.from_json(plan)
    stage = plan_stage(cfg, plan)
    results = results if results is not None else open_results(cfg.results)
    results.ensure_schema()
    chunks = [stage.completed_chunk(i) for i in plan.indexes]
    missing = [i for i, c in zip(plan.indexes, chunks, strict=True) if c is None]
    if missing:
        previous = _published_run(results, plan) if len(missing) == len(chunks) else None
        if previous is not None:
            logger.info("plan %s was already published as run %s", plan.plan_id, previous["run_id"])
            return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in previous.items()
                    if k in ("run_id", "day", "model_name", "model_version", "rows_in", "rows_scored",
                             "rows_rejected")} | {"plan_id": plan.plan_id, "already_published": True}
        raise ScoringError(f"chunks {missing} of plan {plan.plan_id} are not staged in {stage.root}")
    reused = sum(1 for r in chunk_results or [] if r.get("reused") and "challenger" not in r)
    run = start_record(results, plan.model.name, plan.day, plan.model.version, trigger,
                       {**plan.details, "plan_id": plan.plan_id, "chunks": len(plan.chunks),
                        "chunks_reused": reused, "engine": dict(plan.engine)}, plan.planned_at)
    done = [m for c in chunks for m in c or []]  # every part of every chunk, in order
    try:
        with open_source(cfg.source) as source:
            quality = _quality(cfg, plan, source)
        finish_run(cfg, results, run, stage, done, quality, _shadow(cfg, plan, chunk_results or []))
    except Superseded as exc:  # a newer run of the day published: this plan's result must not replace it
        record_failure(results, run, exc, stage, done)
        run_folder(cfg, plan).remove()
        return _counts(run, plan, status="superseded", note=str(exc), table=cfg.results.table)
    except BaseException as exc:
        record_failure(results, run, exc, stage, done)
        raise
    run_folder(cfg, plan).remove()
    remove_stale(run_folder(cfg, plan).root.parent, run.started_at.timestamp())
    logger.info("run %s published: %s in, %s scored, %s quarantined (%s of %s chunks reused)", run.run_id,
                run.rows_in, run.rows_scored, run.rows_rejected, reused, len(plan.chunks))
    return _counts(run, plan, chunks=len(plan.chunks), chunks_reused=reused, table=cfg.results.table)


FAILED = ("failed", "upstream_failed")


def _attempt_row(results: ResultsStore, plan: RunPlan) -> str | None:
    """The run id of the finalised ledger row that this attempt's publish entered (same plan, started at its
    ``planned_at`` or later), or None: publish failed before it wrote one (e.g. chunks not staged), or its row
    is still ``running`` (its process died)."""
    rows = results.runs(limit=200, model=plan.model.name).to_pylist()
    for row in rows:
        started = row.get("started_at")
        if started is None or row.get("status") == "running" or str(row.get("day")) != str(plan.day):
            continue
        if started.tzinfo is None:
            started = started.replace(tzinfo=dt.UTC)
        details = json.loads(row.get("details") or "{}")
        if details.get("plan_id") == plan.plan_id and started >= plan.planned_at:
            return str(row["run_id"])
    return None


def record_outcome(cfg: Config, interval: DataInterval, plan: PlanLike | None,
                   task_states: dict[str, str], details: dict[str, Any] | None = None, *,
                   results: ResultsStore | None = None) -> dict[str, Any]:
    """Record how a scheduler run ended, whatever happened before: the ledger gets a failed row naming the
    failed tasks unless ``publish`` already recorded the outcome itself.

    Args:
        cfg: the loaded configuration.
        interval: the run's data interval.
        plan: the plan, or None when planning failed.
        task_states: state per task of the run (``score_chunk[3]`` for mapped tasks).
        details: scheduler facts to keep in the ledger.
        results: the open results store of the ledger (default: ``cfg.results``, opened here).

    Returns:
        ``status`` (success or failed), the ``failed`` tasks and the ledger ``run_id`` when known.
    """
    plan = None if plan is None else RunPlan.from_json(plan)
    failed = sorted(t for t, s in task_states.items() if s == "failed")
    publish = task_states.get("publish")
    if publish == "success" and not failed:
        return {"status": "success", "failed": []}
    results = results if results is not None else open_results(cfg.results)
    results.ensure_schema()
    if publish == "failed" and plan is not None:
        recorded = _attempt_row(results, plan)
        if recorded is not None:  # publish failed after entering its row, and finalised it
            return {"status": "failed", "failed": failed, "recorded_by": "publish", "run_id": recorded}
    run = start_record(results, cfg.model.name, interval.day, plan.model.version if plan else None,
                       TRIGGER, {**(details or {}), **({"plan_id": plan.plan_id, "engine": dict(plan.engine)}
                                                        if plan else {}), "task_states": task_states},
                       plan.planned_at if plan else None)
    stuck = sorted(t for t, s in task_states.items() if s in FAILED or s is None)
    error = ScoringError(f"tasks failed: {', '.join(failed or stuck) or 'unknown'}; staged chunks are kept "
                         "for a retry")
    record_failure(results, run, error)
    return {"status": "failed", "failed": failed, "run_id": run.run_id}
