"""Shared nothing but the databases and an object store (issue 30): the scoring DAG on a CeleryExecutor cluster
(``deploy/cluster.py``) whose two Celery workers stand in for two machines. Each worker runs in its own UTS and
mount namespace with a private tmpfs over ``/tmp`` (and the test's own folder), which holds every local path
the project uses here: AIRFLOW_HOME and its task logs, the config's folders (data docs, job outputs), the
worker's temp folder and its model cache. Only what a deployment ships to every machine, the config, is bound
back read-only. Source and results are PostgreSQL (own schema); chunks are staged, and the model store (versions,
alias history, expectation suites) kept, on a moto S3 server (loopback port); Redis is the broker.

Two runs of one 600-row day in 6 chunks:
1. Once a worker has scored a chunk and runs another, every process of that worker is SIGKILLed (by pid);
   Airflow's task heartbeat timeout fails that try and the retry runs on the other worker: the run succeeds.
2. The killed worker is started again (a new, empty tmpfs); a third process (``scoring models promote``, on
   this host, outside the cluster) promotes version 2; the next run scores with version 2 on both workers,
   each from its own verified cache entry fetched from the object store.

Each run's predictions equal a single-process ``scoring run`` of the same day and version per row (|diff| <=
1e-12) and the model's own ``predict_proba`` (<= 1e-9); no row lost or duplicated; rows_in = scored +
quarantined in the ledger. Bounded in time; every process is stopped by pid, the metadata DB dropped, the
Redis keys deleted and the schema dropped in finalizers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

from deploy import cluster
from tests.conftest import SCORE_DAY, START, TRAIN_END, write_config
from tests.dags.airflow_env import DAG_ID, ROOT
from tests.dags.test_celery_e2e import _chunks, _meta, _run_state, _tails, _wait, celery_cluster, redis_db  # noqa: F401
from tests.helpers import published, source_day
from tests.storage.pg_helpers import copy_sample, pg_ledger, pg_published

ROWS_PER_CHUNK = 100  # 600 rows a day -> 6 chunks
WAIT_S = 600  # cluster start and both runs (about 120 s at load average 3, 430 s at 15); the test timeout bounds the rest
NAME = "loan_default"

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _cli(*args: str, timeout: float = 240) -> str:
    out = subprocess.run([sys.executable, "-m", "scoring.cli", *args], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _model_scores(sample_db: Path, s3_server, store: str, version: int, folder: Path) -> dict[str, float]:
    """The version's own predict_proba on every row of the day: its artifact fetched with a filesystem of the
    test's own and read with joblib, apart from the store's code."""
    local = folder / f"v{version}.joblib"
    with s3_server.filesystem().open_input_stream(f"{store.removeprefix('s3://')}/{NAME}/{version}/model.joblib") \
            as src_file:
        local.write_bytes(src_file.read())
    src = source_day(sample_db, SCORE_DAY)
    model = joblib.load(local)
    return dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))


def _check_run(pg_url: str, schema: str, version: int, cli: dict[str, float], model: dict[str, float]) -> None:
    pred = pg_published(pg_url, schema, SCORE_DAY)
    assert pred["source_key"].is_unique and set(pred["source_key"]) == set(cli), "rows lost or duplicated"
    got = pred.set_index("source_key")["score"].astype(float)
    np.testing.assert_allclose(got.to_numpy(), [cli[k] for k in got.index], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.to_numpy(), [model[k] for k in got.index], rtol=0, atol=1e-9)
    last = pg_ledger(pg_url, schema).iloc[-1]
    assert (last["status"], int(last["model_version"])) == ("success", version)
    assert last["rows_in"] == last["rows_scored"] + last["rows_rejected"] == len(pred) == 600


def _worker_sees(pid: int, path: Path) -> bool:
    """Whether ``path`` exists in the mount namespace of process ``pid``."""
    return Path(f"/proc/{pid}/root{path}").exists()


def _ready_count(spec: cluster.ClusterSpec, index: int) -> int:
    log = spec.home / "logs" / "components" / f"worker-{index}.log"
    return log.read_text(errors="replace").count(" ready.") if log.exists() else 0


@pytest.mark.timeout(900)
def test_isolated_workers_pick_up_a_promotion_and_survive_a_killed_worker(
        tmp_path: Path, sample_db: Path, pg_url: str, pg_schema: str, s3_server, s3_staging: str,
        celery_cluster: cluster.ClusterSpec, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from scoring.config import load_config
    from scoring.models.cache import entry_name
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    spec = celery_cluster
    monkeypatch.setenv("SCORING_MODEL_CACHE", str(tmp_path / "cache-test"))
    # What every machine gets (read-only in the workers): the config, nothing else.
    shared = tmp_path / "deploy"
    shared.mkdir()
    store = f"{s3_staging}/models"  # versions, alias history and suites (<store>/.suites)
    copy_sample(sample_db, pg_url, pg_schema)
    source = {"kind": "postgres", "url": pg_url, "path": None, "table": f"{pg_schema}.loan_applications"}
    validation = {"range_rule": "minmax"}
    # No scheduled runs: a Feb 29 cron from 2026-03-01 has no interval ending before 2028, so the test's runs are
    # the ones it triggers (manual runs of days on or after schedule.start_date).
    schedule = {"start_date": "2026-03-01", "cron": "0 0 29 2 *", "catchup": False, "retries": 2,
                "retry_delay_s": 2, "task_timeout_min": 5}
    cfg = write_config(shared, sample_db, store, source=source, schedule=schedule, workers=2, validation=validation,
                       results={"kind": "postgres", "url": pg_url, "path": None, "schema": pg_schema,
                                "table": "predictions", "staging_dir": f"{s3_staging}/staging"})
    (tmp_path / "cli").mkdir()
    cli_cfg = write_config(tmp_path / "cli", sample_db, store, source=source, validation=validation)
    # Version 1 (champion) and version 2 (another training window, no alias: the promotion comes later),
    # registered with their suites on the object store.
    loaded = load_config(cfg)
    assert str(loaded.validation.suites_dir).startswith("s3://")
    v1 = train_model(loaded, START, TRAIN_END)
    write_version_suite(loaded, v1)
    v2 = train_model(loaded, START, START + dt.timedelta(days=3), aliases=[])
    write_version_suite(loaded, v2)
    assert (v1.version, v2.version) == (1, 2)

    temp = Path(tempfile.gettempdir()).resolve()
    spec.isolate = [temp, *([] if tmp_path.resolve().is_relative_to(temp) else [tmp_path])]
    # What a deployment installs on every host (the project and its environment) stays visible, read-only,
    # when it lies under the hidden temp folder (a checkout in /tmp, as CI's fresh clone may be).
    installed = sorted({p for p in (ROOT.resolve(), Path(sys.prefix).resolve()) if p.is_relative_to(temp)})
    installed = [p for p in installed if not any(p != q and p.is_relative_to(q) for q in installed)]
    spec.shared_ro = [shared, *installed]
    worker_cache = temp / "scoring-model-cache"
    spec.worker_env.update({"TMPDIR": str(temp), "XDG_CACHE_HOME": str(temp / "cache"),
                            "SCORING_MODEL_CACHE": str(worker_cache)})
    spec.configs = [cfg]
    # Every local path of the run is under a worker's private tmpfs (or the read-only config folder).
    local = [p for p in (spec.home, loaded.validation.data_docs_dir, loaded.jobs.output_dir, loaded.model.store,
                         loaded.results.staging_dir, loaded.validation.suites_dir) if isinstance(p, Path)]
    assert all(p.resolve().is_relative_to(spec.isolate[0]) for p in local), local
    canary = tmp_path / "host_only"
    canary.write_text("only this host")

    reference = subprocess.Popen([sys.executable, "-m", "scoring.cli", "run", "-c", str(cli_cfg), "--date",
                                  SCORE_DAY.isoformat()], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        deadline = t0 + WAIT_S
        pids = cluster.up(spec)
        _wait(spec, "the api-server", lambda: cluster.api_healthy(spec.api_port), deadline, every=2)
        _wait(spec, "the DAG to be parsed", lambda: _meta(
            spec, "SELECT 1 FROM serialized_dag WHERE dag_id = %s", [DAG_ID]), deadline, every=2)
        marks["ready"] = time.monotonic() - t0
    finally:
        output = reference.communicate(timeout=180)[0]
    assert reference.returncode == 0, output
    for i in (1, 2):  # each worker: its own /tmp (the host's files are not there), the shipped config read-only
        pid = pids[f"worker-{i}"]
        assert not _worker_sees(pid, canary) and _worker_sees(pid, cfg)
        mounts = {m.split()[4]: m for m in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()}
        assert " - tmpfs " in mounts[str(temp)], mounts
        assert mounts[str(shared)].split()[5].startswith("ro"), mounts[str(shared)]
    assert _worker_sees(os.getpid(), canary)  # while this host has it
    workers = {cluster.worker_name(1), cluster.worker_name(2)}

    # Run 1 (version 1): once a worker has scored a chunk and runs another, SIGKILL every process of it.
    ref1 = published(tmp_path / "cli" / "results.duckdb", SCORE_DAY)
    cli1 = dict(zip(ref1["source_key"].astype(str), ref1["score"].astype(float), strict=True))
    cluster.trigger(spec, DAG_ID, "run_v1", {"day": SCORE_DAY.isoformat(), "rows_per_chunk": ROWS_PER_CHUNK})
    running: list[tuple] = []

    def a_second_chunk_runs() -> bool:
        chunks = _chunks(spec, "run_v1")
        done = {c[2] for c in chunks if c[1] == "success"}
        running[:] = [c for c in chunks if c[1] == "running" and c[2] in done]
        return bool(running)

    _wait(spec, "a worker to run its second score_chunk", a_second_chunk_runs, deadline, every=0.2)
    victim_index, _state, victim, _try = running[0]
    victim_n = int(victim.rsplit("-", 1)[1])
    assert cluster.kill_component(pids[f"worker-{victim_n}"], signal.SIGKILL)
    marks["killed"] = time.monotonic() - t0
    _wait(spec, "run 1 to end", lambda: _run_state(spec, "run_v1") in ("success", "failed"), deadline)
    marks["run_v1"] = time.monotonic() - t0
    assert _run_state(spec, "run_v1") == "success", _tails(spec)
    chunks = {c[0]: c for c in _chunks(spec, "run_v1")}
    assert len(chunks) == 6 and {c[1] for c in chunks.values()} == {"success"}
    assert {c[2] for c in chunks.values()} == workers, f"score_chunk ran on {chunks}"
    assert chunks[victim_index][3] >= 2 and chunks[victim_index][2] != victim, chunks[victim_index]
    _check_run(pg_url, pg_schema, 1, cli1, _model_scores(sample_db, s3_server, store, 1, tmp_path))

    # The killed worker comes back (a fresh private tmpfs); a third process promotes version 2.
    ready = _ready_count(spec, victim_n)
    restarted = cluster.start_worker(spec, victim_n)
    _wait(spec, f"worker {victim_n} to be ready again", lambda: _ready_count(spec, victim_n) > ready, deadline)
    assert not _worker_sees(restarted, canary) and _worker_sees(restarted, cfg)
    monkeypatch.setenv("SCORING_MODEL_CACHE", str(tmp_path / "cache-third-process"))
    _cli("models", "promote", NAME, "2", "-c", str(cfg), "--force", "--reason", "e2e: a third process promotes")
    _cli("run", "-c", str(cli_cfg), "--date", SCORE_DAY.isoformat())  # the single-process reference of v2
    ref2 = published(tmp_path / "cli" / "results.duckdb", SCORE_DAY)
    cli2 = dict(zip(ref2["source_key"].astype(str), ref2["score"].astype(float), strict=True))
    assert cli2 != cli1

    # Run 2: the next run scores with version 2, on both workers.
    cluster.trigger(spec, DAG_ID, "run_v2", {"day": SCORE_DAY.isoformat(), "rows_per_chunk": ROWS_PER_CHUNK})
    _wait(spec, "run 2 to end", lambda: _run_state(spec, "run_v2") in ("success", "failed"), deadline)
    marks["run_v2"] = time.monotonic() - t0
    assert _run_state(spec, "run_v2") == "success", _tails(spec)
    chunks2 = _chunks(spec, "run_v2")
    assert len(chunks2) == 6 and {c[1] for c in chunks2} == {"success"}, chunks2
    # Both workers loaded version 2 in a task of this run: plan verifies and loads the artifact, score_chunk
    # scores with it. Which worker runs which is Celery's choice: the worker that ran plan may keep its slot for
    # up to [workers] min_heartbeat_interval (5 s) after the task process exits, long enough for the other to
    # score all six 100-row chunks, so score_chunk alone need not reach both.
    loaders = _meta(spec, "SELECT task_id, map_index, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s "
                    "AND task_id IN ('plan', 'score_chunk') AND state = 'success'", [DAG_ID, "run_v2"])
    assert {h for _t, _i, h in loaders} == workers, f"plan and score_chunk ran on {loaders}"
    details = pg_ledger(pg_url, pg_schema).iloc[-1]["details"]
    details = json.loads(details) if isinstance(details, str) else details
    assert details.get("airflow_run_id") == "run_v2", details
    _check_run(pg_url, pg_schema, 2, cli2, _model_scores(sample_db, s3_server, store, 2, tmp_path))
    # Each worker loaded version 2 from its own cache entry, fetched from the object store and verified.
    for pid in (pids[f"worker-{3 - victim_n}"], restarted):
        assert _worker_sees(pid, worker_cache / entry_name(v2) / "model.joblib"), f"worker {pid} has no v2 entry"
    assert not (worker_cache / entry_name(v2)).exists()  # not on this host: each worker fetched its own
    assert list(pg_ledger(pg_url, pg_schema)["status"]) == ["success", "success"]
    print(f"shared-nothing e2e: killed {victim} while it ran chunk {victim_index}; v2 promoted by a third "
          f"process; seconds: {json.dumps({k: round(v, 1) for k, v in marks.items()})}", file=sys.stderr)
