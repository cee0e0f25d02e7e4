"""Running an on-demand job through the product's one scoring path (the queue is ``scoring.run.jobs``).

A job is planned by the one plan maker (``planner.make_plan``: its input read whole as one stream of chunks,
engine and chunk size chosen as a run's are), goes through the model version's quality gate
(``prepare_quality``, without the day's interval rule), chunked scoring and staging (``run_chunks`` -> ``process_chunk``), the whole-input checks and one publish
transaction (the engine's ``finish_run`` into a ``targets.JobTarget``: it replaces the job's partition of
``job_predictions`` / ``job_quarantine`` and marks the job succeeded in the jobs ledger,
``storage/results/jobs_ledger.py``); a failure goes through the engine's ``record_failure``. An output file,
when asked, is written aside and renamed over before that transaction (``storage/job_output.write_output``),
so a retried job rewrites it and never duplicates rows. The job's ledger ``details.engine`` says which
engine (native | compiled) scored it; publish keeps the version its chunks were staged with.

Entry points: ``process_job`` / ``work`` (embedded: ``scoring jobs submit --wait``, ``scoring jobs work``) and
the Airflow task bodies ``airflow_stage`` / ``airflow_publish`` / ``airflow_record`` (DAG ``scoring_jobs``).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import time
from dataclasses import asdict
from typing import Any

from scoring.config import Config
from scoring.errors import ScoringError, SourceError, ValidationFailed
from scoring.models.store import ModelStore, ModelVersion
from scoring.quality.run_checks import Quality, prepare_quality
from scoring.run.chunks import run_chunks
from scoring.run.jobs import JobResult, JobSpec, check_output, ledger_for
from scoring.run.model_choice import choose_model, load_scorer, loaded_engine
from scoring.run.pipeline import finish_run, new_record, record_failure, score_spec
from scoring.run.planner import make_plan
from scoring.run.targets import JobTarget
from scoring.storage.faults import fault_point
from scoring.storage.output_rules import remove_stale_tmp
from scoring.storage.results import ResultsStore, RunRecord
from scoring.storage.results.jobs_ledger import JobCancelled, JobLedger
from scoring.storage.sources.job_input import open_job_input
from scoring.storage.stagefs import local_staging
from scoring.storage.staging import ChunkManifest, Stage

logger = logging.getLogger(__name__)


def _job_cfg(cfg: Config, spec: JobSpec, version: int | None = None) -> tuple[Config, ModelVersion, dict[str, Any]]:
    """The config the job scores with (its key column, no passthrough, no challengers), the model version it
    uses and the ledger details naming the rule that chose it. ``version``: the version the job's chunks were
    staged with (its ledger row's), which publish keeps whatever the alias says by then."""
    alias = spec.alias or cfg.model.alias
    # The config's pin applies to its own model only, and not when the job names an alias.
    pin = cfg.model.version if spec.alias is None and spec.model == cfg.model.name else None
    own = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": spec.model, "alias": alias,
                                                                      "version": pin})})
    # the one model-choice rule (explicit, pin, alias now)
    mv, rule = choose_model(own, None, version if version is not None else spec.version)
    job_cfg = cfg.model_copy(update={
        "source": cfg.source.model_copy(update={"key_column": spec.key or cfg.source.key_column}),
        "results": cfg.results.model_copy(update={"passthrough": []}),
        "model": cfg.model.model_copy(update={"name": mv.name, "alias": alias, "version": mv.version,
                                              "challengers": []}),
    })
    return job_cfg, mv, rule


def job_stage(cfg: Config, job_id: str) -> Stage:
    """Where a job's chunks are staged: ``<staging_dir>/jobs/<job id>/`` (a retry reuses verified chunks)."""
    return Stage(local_staging(cfg.results, "scoring jobs") / "jobs" / job_id)


def _open_input(job_cfg: Config, cfg: Config, spec: JobSpec) -> Any:
    """The job's input, read as the job's config says (its key column); ``cfg``'s jobs sandbox applies."""
    return open_job_input(job_cfg.source, spec.input, spec.query, spec.params, cfg.jobs.allowed_tables, cfg.jobs)


def _quality(cfg: Config, job_cfg: Config, mv: ModelVersion, source: Any) -> Quality:
    """The job's quality state: the model version's gate without the day's interval rule."""
    return prepare_quality(job_cfg, mv, source, None, suite_key=cfg.source.key_column)


def stage_job(cfg: Config, ledger: JobLedger, job: dict[str, Any]) -> tuple[list[ChunkManifest], Quality]:
    """Gate, score and stage every chunk of a running job (no results table is written but the ledger's
    progress). Returns the manifests and the job's quality state. Raises JobCancelled when a cancel was
    asked between chunks; SchemaError when the input's columns do not fit the model's signature."""
    spec = JobSpec.from_dict(job["spec"])
    job_cfg, mv, rule = _job_cfg(cfg, spec)
    with _open_input(job_cfg, cfg, spec) as source:
        # The one plan maker: the job's input read whole, as one stream of chunks.
        plan, quality = make_plan(job_cfg, source, None, mv, rule, key=job["job_id"], stream=True,
                                  day=_job_started(job).astimezone(dt.UTC).date(),
                                  suite_key=cfg.source.key_column)
        model, loaded = load_scorer(ModelStore(job_cfg.model.store), mv, plan.engine, job_cfg.workers)
        rows = plan.rows_per_chunk
        total = math.ceil(plan.rows / rows)
        ledger.set_fields(job["job_id"], model_version=mv.version, chunks_total=total, chunks_done=0,
                          details={"engine": loaded})
        stage = job_stage(cfg, job["job_id"])
        done = [0]

        def on_chunk(manifest: ChunkManifest) -> None:
            fault_point(f"after_chunk_{manifest.index}")
            done[0] += 1
            if ledger.progress(job["job_id"], done[0]):
                raise JobCancelled(f"job {job['job_id']} was cancelled after {done[0]} of {total} chunks; "
                                   "nothing was published")

        logger.info("job %s: scoring %s with %s v%s, %s rows per chunk", job["job_id"], source.describe,
                    mv.name, mv.version, rows)
        manifests = run_chunks(source.batches(None, rows), model,
                               functools.partial(loaded_engine, job_cfg.model.store, mv.name, mv.version,
                                                 plan.engine, job_cfg.workers),
                               score_spec(job_cfg, mv), stage, workers=job_cfg.workers, on_chunk=on_chunk,
                               gate=quality.gate)
    return manifests, quality


def publish_job(cfg: Config, ledger: JobLedger, job: dict[str, Any], manifests: list[ChunkManifest] | None = None,
                quality: Quality | None = None) -> JobResult:
    """Judge the whole input, write the output file, then publish the job's partition in one transaction.

    Args:
        cfg: the loaded configuration.
        ledger: the jobs ledger.
        job: the job's ledger row (running).
        manifests: the staged chunks (default: every verified chunk of the job's stage; all must be there).
        quality: the job's quality state (default: prepared again from the input).

    Raises:
        ValidationFailed: a batch rule or output check failed; nothing published.
        JobCancelled: the job was cancelled meanwhile. ScoringError: chunks missing from staging.
    """
    job_id = job["job_id"]
    spec = JobSpec.from_dict(job["spec"])
    stage = job_stage(cfg, job_id)
    if manifests is None:
        manifests = stage.manifests()
        expected = job.get("chunks_total")
        if expected is not None and len(manifests) != expected:
            raise ScoringError(f"job {job_id}: {len(manifests)} of {expected} chunks are staged in {stage.root}")
    job_cfg, mv, _ = _job_cfg(cfg, spec, job.get("model_version"))
    if quality is None:
        with _open_input(job_cfg, cfg, spec) as source:
            quality = _quality(cfg, job_cfg, mv, source)
    run = job_record(job, mv.version)
    target = JobTarget(ledger, job_id, check_output(cfg, spec, job_id), spec.to_table)
    try:  # the engine's one publish step, into the job's target (its partition, output file and ledger row)
        finish_run(job_cfg, target, run, stage, manifests, quality)
    except ValidationFailed as exc:  # its quarantine rows are kept, as a run's are
        record_failure(target, run, exc, stage, manifests)
        raise
    out = target.output
    stage.remove()
    logger.info("job %s succeeded: %s in, %s scored, %s quarantined", job_id, run.rows_in, run.rows_scored,
                run.rows_rejected)
    return JobResult(job_id, "succeeded", run.rows_in, run.rows_scored, run.rows_rejected, str(out) if out else None)


def _job_started(job: dict[str, Any]) -> dt.datetime:
    """When the job's attempt started (its ledger row's ``started_at``, else now); its partition day is this
    instant's UTC date."""
    return job.get("started_at") or dt.datetime.now(dt.UTC)


def job_record(job: dict[str, Any], version: int | None = None) -> RunRecord:
    """The run record of a job's attempt (trigger ``job``): what the engine's publish step and failure path
    take; its target is the job (``targets.JobTarget``), its partition day the day the job started (UTC)."""
    started = _job_started(job)
    return new_record(f"{job['job_id']}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}",
                      started.astimezone(dt.UTC).date(), job["model_name"],
                      version if version is not None else job.get("model_version"), "job",
                      dict(job.get("details") or {}), started)


def fail_job(ledger: JobLedger, job: dict[str, Any], exc: BaseException) -> None:
    """A job's failure through the engine's one failure path (``record_failure`` into its ``JobTarget``):
    ``failed`` (``cancelled`` for JobCancelled) with one line; a job already ended is left as it is."""
    record_failure(JobTarget(ledger, job["job_id"]), job_record(job), exc)


def process_claimed(cfg: Config, ledger: JobLedger, job: dict[str, Any]) -> JobResult:
    """Stage and publish a claimed job in this process; any failure ends it failed (or cancelled) with one
    line in the ledger and is returned, not raised."""
    job_id = job["job_id"]
    try:
        manifests, quality = stage_job(cfg, ledger, job)
        return publish_job(cfg, ledger, ledger.get(job_id) or job, manifests, quality)
    except JobCancelled as exc:
        fail_job(ledger, job, exc)
        job_stage(cfg, job_id).remove()
    except ScoringError as exc:
        fail_job(ledger, job, exc)
    except Exception as exc:  # noqa: BLE001 - a worker keeps going; the job records the unexpected error
        logger.exception("job %s failed unexpectedly", job_id)
        fail_job(ledger, job, exc)
    row = ledger.get(job_id) or {}
    logger.error("job %s %s: %s", job_id, row.get("state"), row.get("error"))
    return JobResult(job_id, row.get("state", "failed"), row.get("rows_in") or 0, 0,
                     row.get("rows_quarantined") or 0, None, row.get("error"))


def process_job(cfg: Config, job_id: str, resume: bool = False, *, results: ResultsStore | None = None) -> JobResult:
    """Claim one queued job (``resume``: also a running one, e.g. an Airflow retry) and process it here
    (``results``: the open results store holding the jobs ledger; default the configured one).

    Raises:
        ScoringError: the job is unknown or not claimable (already running elsewhere, finished, cancelled).
    """
    ledger = ledger_for(cfg, results)
    job = ledger.claim(job_id, resume=("running",) if resume else ())
    if job is None:
        row = ledger.get(job_id)
        raise ScoringError(f"no job {job_id!r} in the jobs ledger" if row is None
                           else f"job {job_id} is {row['state']}, not queued")
    return process_claimed(cfg, ledger, job)


def work(cfg: Config, *, max_jobs: int | None = None, follow: bool = False, poll_s: float = 5.0,
         on_job: Any = None, results: ResultsStore | None = None) -> list[JobResult]:
    """Process queued embedded jobs one at a time, oldest first, until the queue is empty (``follow``: keep
    polling). Two workers never take the same job (``JobLedger.claim``). Returns each job's result.
    ``results``: the open results store holding the jobs ledger (default: the configured one, opened once)."""
    ledger = ledger_for(cfg, results)
    ledger.mark_interrupted(cfg.results.heartbeat_timeout_s, by="scoring jobs work")
    if cfg.jobs.output_dir is not None:
        remove_stale_tmp(cfg.jobs.output_dir)  # outputs a killed worker left half-written
    done: list[JobResult] = []
    while max_jobs is None or len(done) < max_jobs:
        job = ledger.claim()
        if job is None:
            if not follow:
                break
            time.sleep(poll_s)
            continue
        result = process_claimed(cfg, ledger, job)
        done.append(result)
        if on_job:
            on_job(result)
    return done


# Airflow task bodies (dags/scoring_dags.py, DAG scoring_jobs): one call each.

def airflow_stage(cfg: Config, job_id: str, *, results: ResultsStore | None = None) -> dict[str, Any]:
    """Task ``score_job``: claim the job (a retry takes its own running job again) and stage its chunks."""
    ledger = ledger_for(cfg, results)
    job = ledger.claim(job_id, engine="airflow", resume=("running",))
    if job is None:
        row = ledger.get(job_id)
        raise ScoringError(f"no job {job_id!r} in the jobs ledger" if row is None
                           else f"job {job_id} is {row['state']}; nothing to do")
    try:
        manifests, _ = stage_job(cfg, ledger, job)
    except BaseException as exc:
        if isinstance(exc, JobCancelled) or not _transient(exc):
            fail_job(ledger, job, exc)
        raise
    return {"job_id": job_id, "chunks": len(manifests), "rows_in": sum(m.rows_in for m in manifests)}


def airflow_publish(cfg: Config, job_id: str, *, results: ResultsStore | None = None) -> dict[str, Any]:
    """Task ``publish_job`` (pool ``scoring_publish``): publish the staged chunks in one transaction."""
    ledger = ledger_for(cfg, results)
    job = ledger.get(job_id)
    if job is None:
        raise ScoringError(f"no job {job_id!r} in the jobs ledger")
    if job["state"] == "succeeded":
        return {"job_id": job_id, "state": "succeeded", "already_published": True}
    try:
        return asdict(publish_job(cfg, ledger, job))
    except BaseException as exc:
        if isinstance(exc, JobCancelled) or not _transient(exc):
            fail_job(ledger, job, exc)
        raise


def airflow_record(cfg: Config, job_id: str, failed_tasks: list[str], *,
                   results: ResultsStore | None = None) -> dict[str, Any]:
    """Task ``record_job`` (runs whatever happened): a job the tasks left unfinished ends failed."""
    ledger = ledger_for(cfg, results)
    job = ledger.get(job_id)
    if failed_tasks and job is not None:
        fail_job(ledger, job, ScoringError(f"tasks failed: {', '.join(failed_tasks)} (see their logs)"))
    return ledger.get(job_id) or {}


def _transient(exc: BaseException) -> bool:
    """Whether an Airflow retry may help; a job's missing file or bad query is the user's, not transient."""
    from scoring.run.plan import is_transient

    return is_transient(exc) and not isinstance(exc, JobCancelled | SourceError)
