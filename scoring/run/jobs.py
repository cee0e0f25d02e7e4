"""The on-demand job queue: what a job is (``JobSpec``), and submit, claim (``ledger_for`` -> ``JobLedger``),
status and cancel. The queue's state is the jobs ledger (``storage/results/jobs_ledger.py``).

Running a job (gate, score and stage its chunks, publish its partition and output file, record its failure)
is the engine's: ``scoring.run.job_runs``. With ``SCORING_AIRFLOW_URL`` set, ``submit`` records the job and
triggers a ``scoring_jobs`` DAG run whose tasks call ``job_runs.airflow_stage`` / ``airflow_publish`` /
``airflow_record``; otherwise the submitting process (``--wait``) or ``scoring jobs work``
(``job_runs.work``) runs it. The output file is written by ``storage/job_output.write_output``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scoring.config import Config
from scoring.errors import ConfigError, ScoringError
from scoring.run.airflow_api import AirflowApi
from scoring.storage.output_rules import allowed_output, written_by_job
from scoring.storage.results import ResultsStore, open_results
from scoring.storage.results.jobs_ledger import TERMINAL, JobCancelled, JobLedger
from scoring.storage.sources.job_input import check_file_job, check_query_job, file_format, input_path

logger = logging.getLogger(__name__)


@dataclass
class JobSpec:
    """What to score, with what, and where the predictions go (the DAG run's conf carries it as JSON)."""

    model: str
    input: str | None = None
    query: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    alias: str | None = None
    version: int | None = None
    key: str | None = None
    output: str | None = None
    to_table: bool = True
    config: str | None = None  # the config file the job was submitted with (the DAG checks it is listed)
    overwrite: bool = False  # --output may replace an existing file

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobSpec:
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class JobResult:
    """How a processed job ended (the ledger row holds the same)."""

    job_id: str
    state: str
    rows_in: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    output: str | None = None
    error: str | None = None


def new_job_id() -> str:
    """Sortable and unique per submission: an identical job submitted twice is two jobs."""
    return f"job-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def ledger_for(cfg: Config, results: ResultsStore | None = None) -> JobLedger:
    """The jobs ledger of ``results`` (default: the configured results store, opened here), schema ensured."""
    results = results if results is not None else open_results(cfg.results)
    results.ensure_schema()
    return JobLedger(results)


def check_output(cfg: Config, spec: JobSpec, job_id: str | None = None) -> Path | None:
    """The output file's absolute path under ``jobs.output_dir`` (``storage/output_rules.allowed_output``),
    refused in one line (ConfigError) outside it, through a symlink, over an existing file without
    ``--overwrite`` (a retry of ``job_id`` may replace its own), or over a file or folder the product owns."""
    if spec.output is None:
        return None
    file_format(input_path(spec.output))
    assert cfg.jobs.output_dir is not None  # set by load_config
    files = [cfg.results.path, cfg.source.path, *([input_path(spec.input)] if spec.input else [])]
    folders = [cfg.model.store, *([cfg.results.staging_dir] if isinstance(cfg.results.staging_dir, Path) else []),
               cfg.results.export_dir]
    if cfg.results.path is not None:
        folders.append(cfg.results.path.with_name(cfg.results.path.stem + "_export"))
    owner = functools.partial(written_by_job, job_id=job_id) if job_id else None
    return allowed_output(input_path(spec.output), cfg.jobs.output_dir, overwrite=spec.overwrite,
                          protected_files=files, protected_dirs=folders, owner_check=owner)


def check_spec(cfg: Config, spec: JobSpec) -> None:
    """What can be refused before a job is queued (one line each): inputs, output, model name."""
    if (spec.input is None) == (spec.query is None):
        raise ConfigError("a job takes exactly one input: --input PATH or --query SELECT")
    if not spec.to_table and spec.output is None:
        raise ConfigError("a job with --no-table needs --output PATH")
    if spec.alias is not None and spec.version is not None:
        raise ConfigError("give --alias or --version, not both")
    if spec.input is not None:
        check_file_job(input_path(spec.input))
    else:
        check_query_job(cfg.source, spec.query or "", cfg.jobs.allowed_tables, cfg.jobs)
    check_output(cfg, spec)


def submit(cfg: Config, spec: JobSpec, *, wait: bool = False, api: AirflowApi | None = None) -> dict[str, Any]:
    """Queue a job on the configured engine and return its ledger row.

    Args:
        cfg: the loaded configuration (its results store holds the jobs ledger).
        spec: the job.
        wait: embedded engine: process the job in this process before returning.
        api: the Airflow client (default: ``AirflowApi.from_env()``; None there means embedded).

    Raises:
        ConfigError: a spec refused up front. AirflowApiError: the DAG run could not be created (the job is
        then recorded failed with that line).
    """
    check_spec(cfg, spec)
    # Workers may run elsewhere (another folder, an Airflow worker): local paths travel absolute.
    spec.input = str(input_path(spec.input).resolve()) if spec.input else None
    out = check_output(cfg, spec)
    spec.output = str(out) if out else None
    api = api if api is not None else AirflowApi.from_env()
    ledger = ledger_for(cfg)
    job_id = new_job_id()
    ledger.add(job_id, "airflow" if api else "embedded", spec.model, asdict(spec))
    logger.info("job %s queued (%s engine)", job_id, "airflow" if api else "embedded")
    if api is not None:
        run_id = f"job__{job_id}"
        try:
            api.trigger(run_id, {"job_id": job_id, "config": spec.config})
        except ScoringError as exc:
            from scoring.run.job_runs import fail_job  # the engine's one failure path

            fail_job(ledger, ledger.get(job_id) or {"job_id": job_id, "model_name": spec.model}, exc)
            raise
        ledger.set_fields(job_id, airflow_run_id=run_id)
    elif wait:
        claimed = ledger.claim(job_id)
        if claimed is not None:
            from scoring.run.job_runs import process_claimed

            process_claimed(cfg, ledger, claimed)
    return ledger.get(job_id) or {}


def job_status(cfg: Config, job_id: str, api: AirflowApi | None = None) -> dict[str, Any]:
    """The job's ledger row; for an Airflow job not yet ended, its DAG run's state in ``airflow_state``
    (a DAG run that failed before the job could say so shows the job ``failed`` with that line).

    Raises:
        ScoringError: no such job.
    """
    ledger = ledger_for(cfg)
    ledger.mark_interrupted(cfg.results.heartbeat_timeout_s, job_id, by="scoring jobs status")
    row = ledger.get(job_id)
    if row is None:
        raise ScoringError(f"no job {job_id!r} in the jobs ledger")
    if row["engine"] == "airflow" and row["state"] not in TERMINAL and row.get("airflow_run_id"):
        api = api if api is not None else AirflowApi.from_env()
        if api is not None:
            row["airflow_state"] = api.run_state(row["airflow_run_id"])
            if row["airflow_state"] == "failed":
                row["state"] = "failed"
                row["error"] = row.get("error") or f"Airflow DAG run {row['airflow_run_id']} failed (see its task logs)"
    return row


def cancel(cfg: Config, job_id: str, api: AirflowApi | None = None) -> str:
    """Cancel a job: a queued one at once; a running embedded one stops at its next chunk (one whose worker
    process is gone ends ``cancelled`` at once); an Airflow one has its DAG run marked failed and ends
    ``cancelled``. Returns the job's state after the call."""
    ledger = ledger_for(cfg)
    ledger.mark_interrupted(cfg.results.heartbeat_timeout_s, job_id, state="cancelled", by="scoring jobs cancel")
    row = ledger.get(job_id)
    if row is None:
        raise ScoringError(f"no job {job_id!r} in the jobs ledger")
    if row["state"] in TERMINAL:
        return row["state"]
    if row["engine"] == "airflow" and row.get("airflow_run_id"):
        api = api if api is not None else AirflowApi.from_env()
        if api is None:
            raise ScoringError(f"job {job_id} runs under Airflow: set SCORING_AIRFLOW_URL (and credentials) to cancel it")
        api.fail_run(row["airflow_run_id"])
        from scoring.run.job_runs import fail_job  # the engine's one failure path

        fail_job(ledger, row, JobCancelled(f"cancelled: Airflow DAG run {row['airflow_run_id']} marked failed"))
        return "cancelled"
    return ledger.cancel(job_id)
