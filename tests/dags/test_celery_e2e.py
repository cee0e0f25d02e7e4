"""The scoring DAG on a real CeleryExecutor cluster (``deploy/cluster.py``): api-server, scheduler,
dag-processor and two Celery workers (concurrency 1 each, each in its own UTS namespace, so its own hostname),
Redis broker (own db number and key prefix), a PostgreSQL metadata DB created for the test, PostgreSQL source and
results (own schema), chunks staged on S3 (moto server on a loopback port); each worker has a private tmpfs over
the local staging path and its TMPDIR (``unshare --mount``). One day in 6 chunks; once a worker has scored a chunk and runs another, every process of
that worker is killed (SIGKILL). Airflow's task heartbeat timeout (lowered here to 15 s) fails that try and the
retry runs on the other worker. Then: the predictions equal a single-process ``scoring run`` of the same day per
row (|diff| <= 1e-12) and the model's own ``predict_proba`` (<= 1e-9), the partition is complete (no lost or
duplicated rows), rows_in = scored + quarantined, and the mapped ``score_chunk`` task instances ran on both
worker hostnames (the killed try on the victim, in ``task_instance_history``).

Bounded in time; every process is stopped by pid, the metadata DB dropped and the Redis keys deleted in
finalizers, whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest

from deploy import cluster
from tests.conftest import SCORE_DAY, write_config
from tests.dags.airflow_env import DAG_ID, ROOT
from tests.helpers import published
from tests.run.fault_helpers import expected_scores
from tests.storage.pg_helpers import copy_sample, pg_ledger, pg_published

ROWS_PER_CHUNK = 100  # 600 rows a day -> 6 chunks
WAIT_S = 300  # cluster start and the run together; the test timeout bounds the rest
RUN_ID = "celery_kill"
REDIS = "redis://127.0.0.1:6379"

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _service_missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture()
def redis_db() -> tuple[str, str]:
    """(broker URL on an empty Redis db number, a unique key prefix); the prefix's keys are deleted afterwards."""
    import redis

    try:
        probe = redis.Redis.from_url(f"{REDIS}/0", socket_timeout=5)
        probe.ping()
    except redis.RedisError as exc:
        _service_missing(f"Redis not reachable at {REDIS} ({exc})")
    empty = [n for n in range(15, 0, -1) if redis.Redis.from_url(f"{REDIS}/{n}", socket_timeout=5).dbsize() == 0]
    if not empty:
        pytest.skip("no empty Redis db number (1-15) for the broker")
    number, prefix = empty[0], f"scoring-test-{uuid.uuid4().hex[:10]}:"
    yield f"{REDIS}/{number}", prefix
    from deploy.cluster import flush_broker

    flush_broker(f"{REDIS}/{number}", prefix)
    assert not list(redis.Redis.from_url(f"{REDIS}/{number}", socket_timeout=5).scan_iter(match=prefix + "*"))


@pytest.fixture()
def celery_cluster(tmp_path: Path, pg_url: str, redis_db: tuple[str, str]):
    """A ClusterSpec with its own metadata DB (dropped afterwards) and free ports; stopped by pid afterwards."""
    if not cluster.can_isolate():
        pytest.skip("the Celery workers need their own hostnames: run as root with unshare (util-linux)")
    spec = cluster.ClusterSpec(
        home=tmp_path / "airflow_home", db=f"airflow_test_{uuid.uuid4().hex[:10]}", pg_admin_url=pg_url,
        redis_url=redis_db[0], redis_prefix=redis_db[1], api_port=cluster.free_port(), workers=2, concurrency=1,
        worker_env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        env={
            # A killed worker's task is failed (then retried) after 20 s without a heartbeat, not 300 s.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "3",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__PARALLELISM": "4",
            # No scheduled runs (the configs' Feb 29 cron has no interval ending before 2032), so the DAGs may start unpaused.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        })
    try:
        yield spec
    finally:
        cluster.down(spec.home)
        cluster.drop_database(spec)
        with psycopg.connect(pg_url, autocommit=True) as con:
            assert not con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [spec.db]).fetchone()


_meta = cluster.meta_query


def _run_state(spec: cluster.ClusterSpec, run_id: str) -> str | None:
    rows = _meta(spec, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", [DAG_ID, run_id])
    return rows[0][0] if rows else None


def _chunks(spec: cluster.ClusterSpec, run_id: str) -> list[tuple[int, str, str, int]]:
    """(map_index, state, hostname, try_number) of the run's mapped score_chunk task instances."""
    return _meta(spec, "SELECT map_index, state, hostname, try_number FROM task_instance WHERE dag_id = %s AND "
                 "run_id = %s AND task_id = 'score_chunk' ORDER BY map_index", [DAG_ID, run_id])


def _tails(spec: cluster.ClusterSpec) -> str:
    logs = spec.home / "logs" / "components"
    return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(logs.glob("*.log")))


def _wait(spec: cluster.ClusterSpec, what: str, predicate, deadline: float, every: float = 1.0) -> None:
    try:
        cluster.wait_until(what, predicate, max(1.0, deadline - time.monotonic()), every=every)
    except TimeoutError as exc:
        pytest.fail(f"{exc}; component logs:\n{_tails(spec)}")


def _assert_partition(pg_url: str, schema: str, cli: dict[str, float], model: dict[str, float]) -> None:
    pred = pg_published(pg_url, schema, SCORE_DAY)
    assert pred["source_key"].is_unique and set(pred["source_key"]) == set(cli), "rows lost or duplicated"
    got = pred.set_index("source_key")["score"].astype(float)
    np.testing.assert_allclose(got.to_numpy(), [cli[k] for k in got.index], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.to_numpy(), [model[k] for k in got.index], rtol=0, atol=1e-9)
    last = pg_ledger(pg_url, schema).iloc[-1]
    assert last["status"] == "success"
    assert last["rows_in"] == last["rows_scored"] + last["rows_rejected"] == len(pred) == 600


@pytest.mark.timeout(420)
def test_celery_workers_score_like_one_process_and_survive_a_killed_worker(
        tmp_path: Path, sample_db: Path, trained_store: Path, pg_url: str, pg_schema: str, s3_staging: str,
        celery_cluster: cluster.ClusterSpec) -> None:
    spec = celery_cluster
    # No hidden reliance on one host: each worker sees its own empty tmpfs over the local staging path and over
    # its temp folder, so only the shared S3 staging can carry a chunk from one worker to the publisher.
    local_staging, worker_tmp = tmp_path / "dag" / "staging", tmp_path / "worker_tmp"
    spec.isolate = [local_staging, worker_tmp]
    spec.worker_env["TMPDIR"] = str(worker_tmp)
    copy_sample(sample_db, pg_url, pg_schema)
    source = {"kind": "postgres", "url": pg_url, "path": None, "table": f"{pg_schema}.loan_applications"}
    # No scheduled runs (see the schedule below): the test triggers its run; a retry comes quickly.
    schedule = {"start_date": "2026-03-01", "cron": "0 0 29 2 *", "catchup": False, "retries": 2,
                "retry_delay_s": 2, "task_timeout_min": 5}  # no scheduled run: a Feb 29 cron's next is in 2032
    (tmp_path / "dag").mkdir()
    (tmp_path / "cli").mkdir()
    # The model store and suites stay on this machine's disk, which every worker of this cluster shares.
    cfg = write_config(tmp_path / "dag", sample_db, trained_store, source=source, schedule=schedule, workers=2,
                       results={"kind": "postgres", "url": pg_url, "path": None, "schema": pg_schema,
                                "table": "predictions", "staging_dir": s3_staging},
                       deployment={"single_host": True})
    cli_cfg = write_config(tmp_path / "cli", sample_db, trained_store, source=source)
    spec.configs = [cfg]

    # The single-process reference (scoring run of the same day: PostgreSQL source, one process, one chunk),
    # while the cluster starts.
    reference = subprocess.Popen([sys.executable, "-m", "scoring.cli", "run", "-c", str(cli_cfg), "--date",
                                  SCORE_DAY.isoformat()], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        t0 = time.monotonic()
        deadline = t0 + WAIT_S
        pids = cluster.up(spec)
        marks = {"up": time.monotonic() - t0}
        _wait(spec, "the api-server", lambda: cluster.api_healthy(spec.api_port), deadline, every=2)
        _wait(spec, "the DAG to be parsed", lambda: _meta(
            spec, "SELECT 1 FROM serialized_dag WHERE dag_id = %s", [DAG_ID]), deadline, every=2)
        marks["ready"] = time.monotonic() - t0
        for i in (1, 2):  # the private mounts are there, in the workers' views only
            mounts = Path(f"/proc/{pids[f'worker-{i}']}/mountinfo").read_text().splitlines()
            assert {str(p) for p in spec.isolate} <= {m.split()[4] for m in mounts if " - tmpfs " in m}, mounts
        own = {m.split()[4] for m in Path("/proc/self/mountinfo").read_text().splitlines()}
        assert not own & {str(p) for p in spec.isolate}
    finally:
        output = reference.communicate(timeout=180)[0]
    assert reference.returncode == 0, output
    ref = published(tmp_path / "cli" / "results.duckdb", SCORE_DAY)
    cli_scores = dict(zip(ref["source_key"].astype(str), ref["score"].astype(float), strict=True))
    model_scores = expected_scores(sample_db, trained_store, SCORE_DAY)
    assert len(cli_scores) == 600
    workers = {cluster.worker_name(1), cluster.worker_name(2)}

    # Once a worker has scored a chunk and runs another, SIGKILL every process of that worker.
    cluster.trigger(spec, DAG_ID, RUN_ID, {"day": SCORE_DAY.isoformat(), "rows_per_chunk": ROWS_PER_CHUNK})
    running: list[tuple] = []

    def a_second_chunk_runs() -> bool:
        chunks = _chunks(spec, RUN_ID)
        done = {c[2] for c in chunks if c[1] == "success"}
        running[:] = [c for c in chunks if c[1] == "running" and c[2] in done]
        return bool(running)

    _wait(spec, "a worker to run its second score_chunk", a_second_chunk_runs, deadline, every=0.2)
    victim_index, _state, victim, _try = running[0]
    assert cluster.kill_component(pids[f"worker-{victim.rsplit('-', 1)[1]}"], signal.SIGKILL)
    marks["killed"] = time.monotonic() - t0
    survivor = (workers - {victim}).pop()
    _wait(spec, "the run to end", lambda: _run_state(spec, RUN_ID) in ("success", "failed"), deadline)
    marks["run"] = time.monotonic() - t0
    assert _run_state(spec, RUN_ID) == "success", _tails(spec)

    chunks = {c[0]: c for c in _chunks(spec, RUN_ID)}
    assert len(chunks) == 600 // ROWS_PER_CHUNK and {c[1] for c in chunks.values()} == {"success"}
    assert {c[2] for c in chunks.values()} == workers, f"score_chunk ran on {chunks}"
    retried = chunks[victim_index]
    assert retried[3] >= 2 and retried[2] == survivor, f"the killed chunk's task instance: {retried}"
    history = _meta(spec, "SELECT hostname, try_number FROM task_instance_history WHERE dag_id = %s AND run_id = %s "
                    "AND task_id = 'score_chunk' AND map_index = %s", [DAG_ID, RUN_ID, victim_index])
    assert (victim, 1) in history, history
    _assert_partition(pg_url, pg_schema, cli_scores, model_scores)
    assert list(pg_ledger(pg_url, pg_schema)["status"]) == ["success"]
    print(f"celery e2e: killed {victim} while it ran chunk {victim_index}, retried on {survivor}; seconds: "
          f"{json.dumps({k: round(v, 1) for k, v in marks.items()})}", file=sys.stderr)
