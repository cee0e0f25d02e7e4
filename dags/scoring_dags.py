"""Scoring DAGs: one daily DAG per configured model, and one report DAG each, scheduled on its predictions.

Which configs: ``scoring_configs.py`` (``$SCORING_CONFIGS``, the Airflow Variable ``scoring_config`` or
``$SCORING_CONFIG``, as a path or the YAML itself, else the files listed in ``scoring_dags.yaml``).

Wiring only. Parsing reads those configs and nothing else: no database is opened, nothing outside this
folder is read unless a config path says so, and the package's heavy modules (pyarrow, DuckDB, scikit-learn)
are imported inside the tasks. Each task body is one call into ``scoring``; the run's steps and their
guarantees live there (``scoring/run/plan.py``). A config that cannot be loaded, or that cannot work under
this Airflow's executor (``scoring.deployment``), gets no DAG here: it is the one-line import error of
``scoring_config_errors.py``, and the other configs' DAGs still load.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from scoring.allocators import prefer_system_arrow_pool
from scoring.config import Config
from scoring.storage.connections import predictions_asset_uri

if str(Path(__file__).resolve().parent) not in sys.path:  # Airflow puts the dags folder there; a bare DagBag not
    sys.path.append(str(Path(__file__).resolve().parent))
from scoring_configs import config_sources, describe_source, load_all, runtime_config  # noqa: E402 (this folder)

config_paths = config_sources  # the earlier name (tests/dags/test_business_days_dag.py)

prefer_system_arrow_pool()  # task processes import pyarrow after this file (scoring.allocators says why)

POOL = "scoring_publish"  # size 1: the results database has a single writer
PLAN_XCOM = "plan"  # the XCom key of the run plan (the plan task's return value is the list score_chunk maps over)
@contextmanager
def fail_fast_unless_transient() -> Iterator[None]:
    """Let Airflow retry transient errors (source down, lock held); fail at once on a user mistake."""
    try:
        yield
    except Exception as exc:
        from scoring.run.tasks import is_transient

        if is_transient(exc):
            raise
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def _run_type(dag_run: Any) -> str:
    return getattr(dag_run.run_type, "value", str(dag_run.run_type))


def _details(dag_run: Any) -> dict[str, Any]:
    return {"airflow_dag_id": dag_run.dag_id, "airflow_run_id": dag_run.run_id,
            "airflow_run_type": _run_type(dag_run)}


def business_interval(cfg: Config, params: Any, dag_run: Any, data_interval_end: Any) -> Any:
    """The business day this Airflow run scores, as a ``DataInterval`` (the rule: ``dates.day_of_run``)."""
    from scoring.dates import DataInterval, day_of_run

    run_type = _run_type(dag_run)
    # A scheduled run was due at its interval's end; a manual run without a logical date, when it was triggered.
    due = dag_run.run_after if run_type == "manual" or data_interval_end is None else data_interval_end
    day = day_of_run(cfg.timezone, run_type, scheduled_at=due, logical_date=getattr(dag_run, "logical_date", None),
                     day=(params or {}).get("day"))
    return DataInterval.for_day(day, cfg.timezone)


SCORING_DOC = """### Daily scoring of `{model}`

Scores one **business day** of `{table}` ({zone}) per run with the model `{model}` (alias `{alias}`
unless a version is pinned) and publishes the predictions to `{results}` in one transaction. Config: {where}.

**Which day.** A scheduled run (cron `{cron}`, {zone}) scores the business day before it was due. A manual
run scores its `day` param, else the date of its logical date, else the day before it was triggered. A
day that has not ended yet is refused in one line, and so is a day before `schedule.start_date` ({start})
unless asked for by the `day` param. (A logical date before {start} gets no task from Airflow at all: use
the `day` param for such days.)

**Tasks.** `plan` (count rows, choose the model version, cut key ranges, then check the source schema
against the model and the artifact's checksum) -> `score_chunk` x N (each labelled `day chunk i/N keys (lo, hi]`; stages its
output, writes nothing to the results) -> `publish` (pool `{pool}`, one slot: the only writer) ->
`record_ledger` (runs only when a task failed, so that the run gets a `failed` row in the ledger; on
success publish has written the ledger row and this task shows as skipped).

**Params** (Trigger DAG w/ config): `day` (YYYY-MM-DD), `model_version` (an integer, overrides the
alias), `rows_per_chunk`, `model_as_of` (`now`: the alias's target now; `day`: its target on that day).

**When a run fails.**

1. Read the one-line error of the first red task (its log's last lines), or `scoring runs` (the ledger row
   names the failed tasks).
2. Source or results database down, lock held: Airflow already retried ({retries}x). Fix the cause, then
   **Clear** the failed task: chunks already staged are reused, nothing is scored twice.
3. Bad config, unknown model, schema mismatch, failed quality rule: fix it (`scoring docs --day D` shows the
   rejected rows), then clear the run or trigger `day` again. The previous predictions of the day stay
   published until a run succeeds.
4. `publish` waits in the queue: the pool `{pool}` is missing (`scoring airflow init`) or held by a long run.
"""

REPORT_DOC = """### Reports of `{model}`

Runs each time `scoring_{model}` publishes predictions (scheduled on the Asset `{asset}`, no cron).
`refresh_reports` rebuilds the report tables and views of the published days (`scoring report` reads
them){outcomes}{docs}. Nothing here changes predictions; a failed run can be cleared or left: the next
publish refreshes everything again. Manual runs take no params.
"""


def build_scoring_dag(source: str, cfg: Config, asset: Asset) -> Any:
    """The daily DAG of one config: each run scores one business day (see the module docstring)."""
    conf = source
    sched = cfg.schedule
    zone = ZoneInfo(sched.timezone)

    @dag(
        dag_id=f"scoring_{cfg.model.name}",
        description=f"score {cfg.model.name} daily from {cfg.source.table or 'a custom query'}",
        schedule=CronDataIntervalTimetable(sched.cron, timezone=sched.timezone),
        start_date=dt.datetime.combine(sched.start_date, dt.time(), tzinfo=zone),
        catchup=sched.catchup,
        max_active_runs=sched.max_active_runs,
        default_args={
            "retries": sched.retries,
            "retry_delay": dt.timedelta(seconds=sched.retry_delay_s),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": dt.timedelta(minutes=30),
            "execution_timeout": dt.timedelta(minutes=sched.task_timeout_min),
        },
        params={
            "model_version": Param(None, type=["null", "integer"], minimum=1,
                                   description="score with this version instead of the alias or pin"),
            "rows_per_chunk": Param(None, type=["null", "integer"], minimum=1,
                                    description="rows per chunk instead of the configured size"),
            "day": Param(None, type=["null", "string"], format="date",
                         description=f"business day to score, YYYY-MM-DD in {sched.timezone} (default: a "
                         "scheduled run the day before it is due, a manual run the date of its logical date)"),
            "model_as_of": Param("now", enum=["now", "day"],
                                 description="now: the alias's target at run time; day: its target on the "
                                 "scored business day (alias history)"),
        },
        tags=["scoring", cfg.model.name],
        doc_md=SCORING_DOC.format(
            model=cfg.model.name, table=cfg.source.table or "a custom query", zone=sched.timezone,
            alias=cfg.model.alias, results=f"{cfg.results.kind} table {cfg.results.table}", where=describe_source(source),
            cron=sched.cron, start=sched.start_date, pool=POOL, retries=sched.retries),
    )
    def scoring_dag() -> None:
        @task
        def plan(ti: Any = None, params: Any = None, dag_run: Any = None, data_interval_start: Any = None,
                 data_interval_end: Any = None) -> list[Any]:
            from scoring.run import tasks

            with fail_fast_unless_transient():
                run_cfg = runtime_config(conf)
                # The plan goes to the XCom as soon as it is made, so record_ledger names its version even
                # when the validation after it fails; the return value is what score_chunk maps over.
                return tasks.plan_and_validate(
                    run_cfg, business_interval(run_cfg, params, dag_run, data_interval_end),
                    lambda planned: ti.xcom_push(PLAN_XCOM, planned),
                    version=params.get("model_version"), rows_per_chunk=params.get("rows_per_chunk"),
                    key=dag_run.run_id, details=_details(dag_run), model_as_of=params.get("model_as_of") or "now",
                    explicit_day=bool(params.get("day")), airflow_run=(dag_run.dag_id, dag_run.run_id))

        @task(max_active_tis_per_dagrun=cfg.workers, map_index_template="{{ chunk_label }}")
        def score_chunk(planned: dict[str, Any], index: Any) -> dict[str, Any]:
            from airflow.sdk import get_current_context

            from scoring.run import tasks

            get_current_context()["chunk_label"] = tasks.chunk_label(planned, index)  # type: ignore[typeddict-unknown-key]
            with fail_fast_unless_transient():
                return tasks.score_chunk(runtime_config(conf), planned, index)

        @task(pool=POOL, outlets=[asset])
        def publish(planned: dict[str, Any], chunks: list[dict[str, Any]], dag_run: Any = None,
                    outlet_events: Any = None) -> dict[str, Any]:
            from scoring.run import tasks

            # One slice request for every chunk's manifest. Iterating the lazy sequence (list(chunks)) reads
            # item after item until the item past the end, which the Task SDK's client logs as an
            # "[error] XCom not found" although nothing failed.
            with fail_fast_unless_transient():
                counts = tasks.publish(runtime_config(conf), planned, list(chunks[:]),
                                       airflow_run=(dag_run.dag_id, dag_run.run_id))
            outlet_events[asset].extra = counts
            return counts

        # Runs only when something failed (publish failed, or upstream_failed after any earlier task failed): a
        # successful publish wrote the ledger's success row itself, so on success this task is skipped and costs
        # no task start. Ahead of the report DAG's tasks in the size-1 publish pool, which the publish's asset
        # event would otherwise start first (about 5 s a run).
        @task(pool=POOL, trigger_rule="one_failed", retries=0, priority_weight=100)
        def record_ledger(ti: Any = None, dag_run: Any = None, params: Any = None,
                          data_interval_end: Any = None) -> dict[str, Any]:
            from scoring.run import tasks

            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
            states = {k: v for k, v in states.items() if k not in (ti.task_id, "recheck_late_data")}
            run_cfg = runtime_config(conf)
            outcome = tasks.record_outcome(run_cfg, business_interval(run_cfg, params, dag_run, data_interval_end),
                                     ti.xcom_pull(task_ids="plan", key=PLAN_XCOM), states, _details(dag_run),
                                     airflow_run=(dag_run.dag_id, dag_run.run_id))
            if outcome["status"] != "success":
                raise AirflowFailException(f"run failed: {', '.join(outcome['failed']) or 'see the task logs'}")
            return outcome

        @task(pool=POOL, outlets=[asset])
        def recheck_late_data(planned: dict[str, Any], outlet_events: Any = None) -> list[dict[str, Any]]:
            from scoring.run import tasks

            done = tasks.recheck_late_data(runtime_config(conf), planned["day"])
            outlet_events[asset].extra = {"late_data": done}
            failed = [d["day"] for d in done if d["error"]]
            if failed:
                raise AirflowFailException(f"late-data re-score failed for {', '.join(failed)}")
            return done

        fanout = plan()
        planned = fanout[PLAN_XCOM]
        chunks = score_chunk.partial(planned=planned).expand(index=fanout)
        published = publish(planned, chunks)
        published >> record_ledger()
        if sched.recheck_days > 0:
            published >> recheck_late_data(planned)

    return scoring_dag()


def build_report_dag(source: str, cfg: Config, asset: Asset) -> Any:
    """Refreshes the report tables each time the scoring DAG publishes predictions, then builds the published
    runs' Data Docs (``validation.data_docs``): a scoring run never builds them."""
    conf = source

    @dag(
        dag_id=f"scoring_reports_{cfg.model.name}",
        description=f"refresh reports after {cfg.model.name} predictions are published",
        schedule=[asset],
        start_date=dt.datetime.combine(cfg.schedule.start_date, dt.time(), tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": cfg.schedule.retries, "retry_delay": dt.timedelta(seconds=cfg.schedule.retry_delay_s),
                      "execution_timeout": dt.timedelta(minutes=cfg.schedule.task_timeout_min)},
        tags=["scoring", "reports", cfg.model.name],
        doc_md=REPORT_DOC.format(
            model=cfg.model.name, asset=asset.uri,
            outcomes=", `outcomes` recomputes the outcome metrics of recent days" if cfg.labels is not None else "",
            docs=(", then `data_docs_runs` -> `build_data_docs` render the GX Data Docs of the runs just "
                  "published (`scoring docs --day D` prints where)") if cfg.validation.data_docs else ""),
    )
    def report_dag() -> None:
        @task(pool=POOL, inlets=[asset])
        def refresh_reports(triggering_asset_events: Any = None) -> dict[str, Any]:
            from scoring.run import tasks

            events = [dict(e.extra) for e in (triggering_asset_events or {}).get(asset, [])]
            with fail_fast_unless_transient():
                return {**tasks.refresh_reports(runtime_config(conf)), "events": events}

        refreshed = refresh_reports()
        if cfg.labels is not None:
            @task(pool=POOL)
            def outcomes(refreshed: dict[str, Any]) -> dict[str, Any]:
                from scoring.run import tasks

                with fail_fast_unless_transient():
                    return tasks.recompute_outcomes(runtime_config(conf))

            outcomes(refreshed)
        if cfg.validation.data_docs:
            @task(pool=POOL)
            def data_docs_runs(refreshed: dict[str, Any]) -> list[dict[str, Any]]:
                from scoring.run import tasks

                run_ids = [e["run_id"] for e in refreshed["events"] if e.get("run_id")]
                with fail_fast_unless_transient():
                    return tasks.docs_rows(runtime_config(conf), run_ids or None)

            # Outside the pool: importing GX takes seconds, and the rows are already read.
            @task
            def build_data_docs(rows: list[dict[str, Any]]) -> list[str]:
                from scoring.run import tasks

                with fail_fast_unless_transient():
                    return tasks.render_docs(runtime_config(conf), rows)

            build_data_docs(data_docs_runs(refreshed))

    return report_dag()


def job_config(conf: dict[str, Any]) -> Config:
    """The config a job was submitted with; only a listed config file is accepted (the conf is user input)."""
    listed = config_sources()
    asked = conf.get("config")
    wanted = (str(Path(asked).resolve()) if asked else (listed[0] if len(listed) == 1 else None))
    if wanted not in listed:
        raise AirflowFailException(f"job config {asked!r} is not one of the listed scoring configs")
    return runtime_config(wanted)


def build_jobs_dag(cfg: Config) -> Any:
    """``scoring_jobs``: one run per on-demand job (``scoring jobs submit`` triggers it through the REST API
    with ``{"job_id", "config"}`` as conf). score_job -> publish_job (pool scoring_publish) -> record_job."""

    @dag(dag_id="scoring_jobs", description="on-demand scoring jobs (scoring jobs submit)", schedule=None,
         start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), catchup=False, max_active_runs=cfg.workers + 1,
         default_args={"retries": cfg.schedule.retries, "retry_delay": dt.timedelta(seconds=cfg.schedule.retry_delay_s),
                       "retry_exponential_backoff": 2.0,
                       "execution_timeout": dt.timedelta(minutes=cfg.schedule.task_timeout_min)},
         tags=["scoring", "jobs"])
    def jobs_dag() -> None:
        @task
        def score_job(dag_run: Any = None) -> dict[str, Any]:
            from scoring.run import tasks

            with fail_fast_unless_transient():
                return tasks.stage_job(job_config(dag_run.conf), dag_run.conf["job_id"])

        @task(pool=POOL)
        def publish_job(staged: dict[str, Any], dag_run: Any = None) -> dict[str, Any]:
            from scoring.run import tasks

            with fail_fast_unless_transient():
                return tasks.publish_job(job_config(dag_run.conf), dag_run.conf["job_id"])

        @task(pool=POOL, trigger_rule="all_done", retries=0)
        def record_job(ti: Any = None, dag_run: Any = None) -> dict[str, Any]:
            from scoring.run import tasks

            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
            failed = sorted(t for t, s in states.items() if t != ti.task_id and s in ("failed", "upstream_failed"))
            row = tasks.record_job(job_config(dag_run.conf), dag_run.conf["job_id"], failed)
            if row.get("state") != "succeeded":
                raise AirflowFailException(f"job {row.get('job_id')} {row.get('state')}: {row.get('error')}")
            return {k: str(v) for k, v in row.items() if k in ("job_id", "state", "rows_in", "rows_scored")}

        publish_job(score_job()) >> record_job()

    return jobs_dag()



def build_all() -> dict[str, Any]:
    """Every DAG of every usable config, by dag id, and the ``scoring_jobs`` DAG; the configs that cannot be
    used are left to ``scoring_config_errors.py`` (one import error line each)."""
    dags: dict[str, Any] = {}
    loaded, _ = load_all()
    for source, cfg in loaded:
        asset = Asset(uri=predictions_asset_uri(cfg), group="scoring")
        for built in (build_scoring_dag(source, cfg, asset), build_report_dag(source, cfg, asset)):
            dags[built.dag_id] = built
    if loaded:
        dags["scoring_jobs"] = build_jobs_dag(loaded[0][1])
    return dags


globals().update(build_all())
