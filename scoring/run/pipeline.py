"""Score one data interval end to end: extract -> check -> score in chunks -> stage -> publish."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from scoring.allocators import fix_mmap_threshold
from scoring.config import Config
from scoring.dates import DataInterval
from scoring.errors import (
    ConfigError,
    ModelStoreError,
    SchemaError,
    Superseded,
    ValidationFailed,
    one_line,
)
from scoring.models.contract import contract_of
from scoring.models.scorer import ScoreSpec
from scoring.models.store import ModelStore, ModelVersion
from scoring.quality.run_checks import Quality, conclude_quality
from scoring.run.chunks import run_chunks
from scoring.run.model_choice import choose_model, load_scorer, loaded_engine
from scoring.run.planner import make_plan
from scoring.run.shadow import Shadow, score_challengers
from scoring.run.targets import PartitionTarget, Target
from scoring.storage.faults import fault_point
from scoring.storage.pgconn import redact_url
from scoring.storage.results import ResultsStore, RunRecord, open_results
from scoring.storage.results.jobs_ledger import JobCancelled
from scoring.storage.results.liveness import HEARTBEAT_S
from scoring.storage.sources import open_source
from scoring.storage.stagefs import staging_root
from scoring.storage.staging import ChunkManifest, Stage, remove_stale

logger = logging.getLogger(__name__)
RESULT_LOG = "run_result"  # marks the result's log line: a command that prints the result itself hides it


@dataclass(frozen=True)
class RunResult:
    """What a finished run did; the same figures are in the ledger."""

    run_id: str
    day: dt.date
    model_name: str
    model_version: int
    rows_in: int
    rows_rejected: int
    rows_scored: int
    duration_s: float
    results: str
    status: str = "success"  # or "superseded": a newer run of the day had published; nothing was published
    note: str | None = None


def make_run_id(model: str, day: dt.date, started: dt.datetime) -> str:
    """Readable and unique per attempt; predictions are keyed by (day, model, source key), not by this."""
    return f"{model}__{day.isoformat()}__{started.strftime('%Y%m%dT%H%M%S%fZ')}"


def new_record(run_id: str, day: dt.date, model: str, version: int | None, trigger: str, details: dict[str, Any],
               started: dt.datetime) -> RunRecord:
    """The one constructor of a run's ledger record (``running``), for every entry point: ``start_record``
    (runs, backfill days, the DAG's publish, recorded failures) and a job's attempt (``job_runs.job_record``,
    whose target is the jobs ledger). ``run_id`` is unique per attempt; ``started`` is UTC."""
    return RunRecord(run_id, day, model, version, started, trigger=trigger, details=details)


def start_record(results: ResultsStore, model: str, day: dt.date, version: int | None, trigger: str,
                 details: dict[str, Any], started: dt.datetime | None = None) -> RunRecord:
    """Create a run's ledger row: the one place a run (CLI, backfill day, DAG publish, recorded failure) is
    entered in the ledger. Earlier ``running`` rows of the same (day, model) whose process is gone are marked
    ``interrupted`` first.

    Args:
        results: the results store, schema ensured.
        model, day, version: the partition and the model version (None when it could not be chosen).
        trigger: cli, backfill, airflow, late-data.
        details: the run's ledger details (model rule, interval, plan id, ...).
        started: when the attempt began (default now), e.g. a plan's ``planned_at``.

    Returns:
        The started ``RunRecord`` (status ``running``).
    """
    now = dt.datetime.now(dt.UTC)
    run = new_record(make_run_id(model, day, now), day, model, version, trigger, details, started or now)
    results.mark_interrupted(day, model, by=run.run_id)
    results.start_run(run)
    return run


def score_spec(cfg: Config, mv: ModelVersion) -> ScoreSpec:
    """How the run scores with ``mv``: its contract, the configured threshold and output options."""
    return ScoreSpec(cfg.source.key_column, contract_of(mv.meta), cfg.model.threshold, cfg.output.probabilities,
                     tuple(cfg.results.passthrough))


def run_interval(cfg: Config, interval: DataInterval, *, version: int | None = None, trigger: str = "cli",
                 rows_per_chunk: int | None = None,
                 on_start: Callable[[int], None] | None = None,
                 on_chunk: Callable[[ChunkManifest], None] | None = None,
                 model_as_of: str = "now", details: dict[str, Any] | None = None,
                 results: ResultsStore | None = None, models: ModelStore | None = None) -> RunResult:
    """Score every source row of ``interval`` and replace the (day, model) partition of predictions.

    Args:
        cfg: the loaded configuration.
        interval: the run's data interval; the partition key is its start day.
        version: a model version overriding the configured alias or pin.
        trigger: recorded in the ledger (cli, backfill, airflow, late-data).
        rows_per_chunk: overrides the configured chunk size.
        on_start: called with the interval's row count before scoring (progress bars).
        on_chunk: called after each staged chunk.
        model_as_of: ``now`` or ``day``: the alias's target now or on the business day (``model_choice``).
        details: more ledger details (they win over the model rule's).
        results: the open results store to publish into (default: ``cfg.results``, opened here); an entry
            point that runs many intervals (backfill, late data) opens it once and hands it in.
        models: the open model store to load the version from (default: ``cfg.model.store``).

    Returns:
        The run's counts. Raises ScoringError (after recording the failure in the ledger) on failure;
        the previous partition is then left as it was.
    """
    fix_mmap_threshold()
    models = models if models is not None else ModelStore(cfg.model.store)
    mv, rule = choose_model(cfg, interval, version, model_as_of, models=models)
    warm_model_imports(mv)
    results = results if results is not None else open_results(cfg.results)
    clock = time.monotonic()
    results.ensure_schema()  # before any scoring: a locked or unreadable results database stops the run here
    run = start_record(results, cfg.model.name, interval.day, mv.version, trigger,
                       {**rule, "interval": interval.describe(), **(details or {})})
    steps = run.details.setdefault("steps", {"schema_s": round(time.monotonic() - clock, 3)})
    fault_point("after_ledger_insert")
    stage: Stage | None = None
    manifests: list[ChunkManifest] = []
    try:
        with open_source(cfg.source) as source:
            clock = time.monotonic()
            # The one plan maker, on this run's source (one snapshot): engine, columns read, chunk size, the
            # data quality state (suite, schema-drift policy, duplicate keys) and the challengers.
            plan, quality = make_plan(cfg, source, interval, mv, rule, rows_per_chunk, key=trigger,
                                      details=details, stream=True, models=models)
            model, run.details["engine"] = load_scorer(models, mv, plan.engine, cfg.workers)
            spec = score_spec(cfg, mv)
            schema = source.read_schema()
            rows = plan.rows_per_chunk
            stage = _resumable_stage(cfg, interval, mv, rows, quality, run.run_id)
            if on_start:
                on_start(plan.rows)
            logger.info("scoring %s for %s with %s v%s, %s rows per chunk", source.describe, interval.day,
                        mv.name, mv.version, rows)
            run.details.update(rows_per_chunk=rows, columns_read=list(schema.names))
            loader = functools.partial(loaded_engine, cfg.model.store, mv.name, mv.version, plan.engine,
                                       cfg.workers)
            steps["prepare_s"], clock = round(time.monotonic() - clock, 3), time.monotonic()
            manifests = run_chunks(_mid_extract(source.batches(interval, rows)), model, loader, spec, stage,
                                   workers=cfg.workers, on_chunk=_chunk_hook(results, run, on_chunk),
                                   gate=quality.gate)
            steps["score_s"] = round(time.monotonic() - clock, 3)
            run.details["chunks_reused"] = sum(1 for m in manifests if m.index in stage.reused)
            shadow = score_challengers(cfg, plan.challengers, plan.shadow_failed, schema,
                                       lambda: source.batches(interval, rows), quality.gate, stage) \
                if plan.challengers is not None else None
            if shadow is not None:
                steps["shadow_s"] = round(time.monotonic() - clock - steps["score_s"], 3)
        finish_run(cfg, results, run, stage, manifests, quality, shadow)
    except Superseded as exc:
        record_failure(results, run, exc)
        stage.remove()
        return RunResult(run.run_id, run.day, run.model_name, run.model_version, run.rows_in, run.rows_rejected,
                         0, run.duration_s or 0.0, redact_url(str(results.cfg.path or results.cfg.url)),
                         status="superseded", note=str(exc))
    except BaseException as exc:
        record_failure(results, run, exc, stage, manifests)
        if stage is not None and isinstance(exc, NOT_RESUMABLE):
            stage.remove()
        elif stage is not None:
            stage.unlock()
            logger.info("staged chunks kept in %s: a rerun with the same plan reuses them", stage.root)
        raise
    stage.remove()
    remove_stale(stage.root.parent, run.started_at.timestamp())
    logger.info("run %s: %s in, %s scored, %s quarantined in %.2fs", run.run_id, run.rows_in,
                run.rows_scored, run.rows_rejected, run.duration_s, extra={RESULT_LOG: True})
    return RunResult(run.run_id, run.day, run.model_name, run.model_version, run.rows_in, run.rows_rejected,
                     run.rows_scored, run.duration_s or 0.0, redact_url(str(results.cfg.path or results.cfg.url)))


def _import_quietly(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - the model's load imports it again and reports the error
        logger.debug("background import of %s failed: %s", module, exc)


def warm_model_imports(mv: ModelVersion) -> threading.Thread | None:
    """Import scikit-learn (SciPy with it: about a second of CPU, holding the GIL) in a daemon thread while
    this thread writes the ledger row, opens the source and prepares the quality gate, DuckDB work that mostly
    releases the GIL; the model's load (``load_scorer``) then finds it imported, or waits on Python's import
    lock for the thread to finish it. Nothing else is loaded ahead: the version is unpickled, verified and
    re-checked where it always was. Returns the thread (None when scikit-learn is imported already or the
    version was not saved by it)."""
    if "sklearn" in sys.modules or not mv.meta.get("sklearn_version"):
        return None
    thread = threading.Thread(target=_import_quietly, args=("sklearn.base",), daemon=True,
                              name="scoring-import")
    thread.start()
    return thread


# Failures a rerun of the same plan repeats: their staged chunks are removed instead of kept for a resume.
NOT_RESUMABLE = (ValidationFailed, SchemaError, ConfigError, ModelStoreError)


def _resumable_stage(cfg: Config, interval: DataInterval, mv: ModelVersion, rows: int, quality: Quality,
                     run_id: str) -> Stage:
    """The run's staging folder, ``<staging>/<model>/<day>/cli-<plan>``: the same for a rerun with the same
    plan (model artifact, chunk size, configuration, suite), so it resumes from the chunks staged and verified
    (``run_chunks`` reuses a chunk only when its source rows are the same). A live run of the same plan holds
    the folder; this run then stages privately."""
    suite = quality.suite_path.read_bytes() if quality.suite_path.is_file() else b""
    plan = json.dumps([interval.start.isoformat(), interval.end.isoformat(), mv.version, mv.meta.get("sha256"),
                       rows, cfg.model_dump(mode="json"), hashlib.sha256(suite).hexdigest()], default=str)
    parent = staging_root(cfg.results) / cfg.model.name / interval.day.isoformat()
    stage = Stage(parent / f"cli-{hashlib.sha256(plan.encode()).hexdigest()[:12]}")
    if not stage.lock():
        logger.warning("another live run stages the same plan in %s; staging privately", stage.root)
        stage = Stage(parent / run_id)
        stage.lock()
    return stage


def _mid_extract(batches: Iterator[Any]) -> Iterator[Any]:
    """The source batches, with the ``mid_extract`` fault point after the first batch is read."""
    for index, batch in enumerate(batches):
        if index == 0:
            fault_point("mid_extract")
        yield batch


def _chunk_hook(results: ResultsStore, run: RunRecord,
                on_chunk: Callable[[ChunkManifest], None] | None) -> Callable[[ChunkManifest], None]:
    """After each staged chunk: the caller's callback, the ``after_chunk_<k>`` fault point, a heartbeat."""
    last = [time.monotonic()]

    def hook(manifest: ChunkManifest) -> None:
        if on_chunk:
            on_chunk(manifest)
        fault_point(f"after_chunk_{manifest.index}")
        if time.monotonic() - last[0] >= HEARTBEAT_S:
            results.heartbeat(run)
            last[0] = time.monotonic()

    return hook


def finish_run(cfg: Config, target: ResultsStore | Target, run: RunRecord, stage: Stage,
               manifests: list[ChunkManifest], quality: Quality | None = None, shadow: Shadow | None = None) -> None:
    """The one publish step of every entry point (CLI, backfill, the DAG's publish task, jobs): totals,
    checks, the engine the chunks used, then one transaction into the run's target.

    Args:
        cfg: the loaded configuration (a job's: its key column, no passthrough).
        target: a ``targets.Target`` (``PartitionTarget`` of a (day, model), ``JobTarget`` of a job); a
            ``ResultsStore`` means its (day, model) partition.
        run: the run's ledger record; marked successful inside the publish transaction.
        stage: where the run's chunks are staged.
        manifests: every chunk of the run, verified.
        quality: the run's data quality state; its batch rules, output checks and drift are concluded here
            (raises ValidationFailed, nothing published).
        shadow: what the challengers staged; published in the same transaction (``scoring.run.shadow``).
    """
    target = as_target(target)
    run.rows_in = sum(m.rows_in for m in manifests)
    run.rows_scored = sum(m.scored for m in manifests)
    run.rows_rejected = sum(m.rejected for m in manifests)
    files, qfiles = stage.prediction_files(manifests), stage.quarantine_files(manifests)
    clock = time.monotonic()
    extra = conclude_quality(cfg, run, quality, manifests, files, target.previous_drift(cfg, run)) \
        if quality is not None else {}
    run.details.setdefault("steps", {})["checks_s"] = round(time.monotonic() - clock, 3)
    engine_used(run, manifests)
    run.finish("success")
    task = quality.task if quality is not None else "binary"
    run.details["task"] = task
    if shadow is not None:
        run.details["shadow"] = shadow.details()
    fault_point("before_publish")  # every entry point: checks done, before the target's transaction
    target.publish(run, stage, manifests, files, qfiles, extra, shadow, task)


def as_target(target: ResultsStore | Target) -> Target:
    """A results store means its (day, model) partition."""
    return PartitionTarget(target) if isinstance(target, ResultsStore) else target


def engine_used(run: RunRecord, manifests: list[ChunkManifest]) -> None:
    """Record in ``details.engine.engine`` what scored the run's chunks (their manifests say), whatever the
    entry point planned or loaded: ``compiled``, ``native`` or ``mixed`` (with ``chunks_by_engine``)."""
    used: dict[str, int] = {}
    for manifest in manifests:
        if manifest.stats.get("engine"):
            used[manifest.stats["engine"]] = used.get(manifest.stats["engine"], 0) + 1
    if not used:  # chunks staged before the manifests said (a resumed run of an older version)
        return
    engine = dict(run.details.get("engine") or {})
    engine["engine"] = next(iter(used)) if len(used) == 1 else "mixed"
    if len(used) > 1:
        engine["chunks_by_engine"] = used
    run.details["engine"] = engine


def record_failure(target: ResultsStore | Target, run: RunRecord, exc: BaseException, stage: Stage | None = None,
                   manifests: list[ChunkManifest] | None = None) -> None:
    """The one failure path of every entry point: mark ``run`` failed (``superseded`` for a newer run's
    publish, ``cancelled`` for a cancelled job) in its target's ledger with a one-line error; published
    predictions are not touched. ``rows_scored`` becomes 0 (nothing was published) and what was scored into
    staging moves to ``rows_staged``. A data quality failure also keeps its quarantine rows, so users see
    which rows and rules failed. Never raises: a ledger that cannot be written is logged."""
    status = "superseded" if isinstance(exc, Superseded) else "cancelled" if isinstance(exc, JobCancelled) \
        else "failed"
    run.finish(status, one_line(exc).replace("\x00", "\\x00"))
    run.rows_staged, run.rows_scored = run.rows_scored or sum(m.scored for m in manifests or []), 0
    keep = stage.quarantine_files(manifests) \
        if isinstance(exc, ValidationFailed) and stage is not None and manifests else None
    try:
        as_target(target).fail(run, keep)
    except Exception as err:  # noqa: BLE001 - the original error matters more than the ledger write
        logger.error("could not record the failure of run %s (it stays 'running' until the next run of the day "
                     "or `scoring runs` marks it interrupted): %s", run.run_id, one_line(err))
    (logger.warning if run.status == "superseded" else logger.error)("run %s %s: %s", run.run_id, run.status,
                                                                       run.error)


def run_day(cfg: Config, day: dt.date, **kwargs: Any) -> RunResult:
    """Score one business day (in ``schedule.timezone``). See ``run_interval``."""
    return run_interval(cfg, DataInterval.for_day(day, cfg.timezone), **kwargs)
