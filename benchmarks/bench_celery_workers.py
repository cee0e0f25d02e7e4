"""Celery scale-out benchmark: one fixed day scored by the scoring DAG on 1 Celery worker vs 2, in one run.

Builds a DuckDB source with a ``--rows`` day (default 1,000,000) and a small training day, trains and
registers the sample model, starts a local CeleryExecutor cluster (``deploy/cluster.py``: PostgreSQL metadata
DB created for the run, Redis broker on its own db number and key prefix, 2 workers of concurrency 1, each with
OMP/OpenBLAS/MKL threads pinned to 1), then triggers the day ``--repeat`` times with worker 2 stopped (1 worker)
and ``--repeat`` times with both, in ``--chunks`` mapped chunks. Per run, from the metadata DB: the DAG run's
wall time, the chunk phase (first score_chunk start to last end), the summed task durations, and the
scheduler's share per chunk task: queued -> start latency, and idle slot time
(chunk phase x workers - summed chunk durations) / chunks. Medians; the ratio 1 worker / 2 workers side by side.
The predictions of every run are compared with the first (same keys, identical scores).

    .venv/bin/python benchmarks/bench_celery_workers.py [--rows 1000000] [--repeat 2] [--chunks 8]

``measure(rows, repeat, chunks)`` returns the figures as a dict (for a combined scale-out benchmark). Source and
results are DuckDB and staging is local here (both workers share this host's disk); the end-to-end test covers
PostgreSQL, S3 staging and isolated workers. Everything started is stopped by pid and the metadata DB dropped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy import cluster  # noqa: E402

DAY = dt.date(2026, 6, 2)
TRAIN_DAY = dt.date(2026, 6, 1)
DAG_ID = "scoring_loan_default"
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RUN_TIMEOUT_S = 1800


def build(folder: Path, rows: int) -> Path:
    """Source with the training day and the benchmark day, the trained sample model, and a config."""
    import duckdb
    import yaml

    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    db = folder / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        for day, n in ((TRAIN_DAY, 50_000), (DAY, rows)):
            batch = generate_day(day, n, seed=11)
            con.register("batch", batch)
            con.execute("CREATE TABLE IF NOT EXISTS loan_applications AS SELECT * FROM batch LIMIT 0")
            con.execute("INSERT INTO loan_applications SELECT * FROM batch")
            con.unregister("batch")
    raw = yaml.safe_load((ROOT / "scoring.yaml").read_text())
    raw["source"].update({"path": str(db)})
    raw["model"].update({"store": str(folder / "models")})
    raw["results"].update({"path": str(folder / "results.duckdb"), "staging_dir": str(folder / "staging"),
                           "reader_export": False})
    raw["workers"] = 2  # max_active_tis_per_dagrun of score_chunk
    raw["deployment"] = {"single_host": True}  # DuckDB results and local staging: every worker is this machine
    raw["schedule"] = {**(raw.get("schedule") or {}), "start_date": "2030-01-01", "retries": 0,
                       "task_timeout_min": 30}
    cfg_path = folder / "scoring.yaml"
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(cfg_path)
    write_version_suite(cfg, train_model(cfg, TRAIN_DAY, TRAIN_DAY))
    return cfg_path


def _run(spec: cluster.ClusterSpec, run_id: str, rows_per_chunk: int) -> dict:
    cluster.trigger(spec, DAG_ID, run_id, {"day": DAY.isoformat(), "rows_per_chunk": rows_per_chunk})

    def ended() -> bool:
        state = cluster.meta_query(spec, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s",
                                   [DAG_ID, run_id])
        return bool(state) and state[0][0] in ("success", "failed")

    cluster.wait_until(f"run {run_id}", ended, RUN_TIMEOUT_S, every=1)
    (state, start, end), = cluster.meta_query(
        spec, "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = %s AND run_id = %s", [DAG_ID, run_id])
    if state != "success":
        raise SystemExit(f"run {run_id} {state}; component logs: {spec.home / 'logs'}")
    tis = cluster.meta_query(spec, "SELECT task_id, start_date, end_date, queued_dttm, hostname FROM task_instance "
                             "WHERE dag_id = %s AND run_id = %s", [DAG_ID, run_id])
    chunks = [t for t in tis if t[0] == "score_chunk"]
    chunk_s = [(t[2] - t[1]).total_seconds() for t in chunks]
    phase = (max(t[2] for t in chunks) - min(t[1] for t in chunks)).total_seconds()
    idle = (phase * len({t[4] for t in chunks}) - sum(chunk_s)) / len(chunks)
    return {"wall_s": (end - start).total_seconds(), "chunk_phase_s": phase, "chunks": len(chunks),
            "idle_slot_per_chunk_s": max(0.0, idle),
            "chunk_task_s": statistics.median(chunk_s), "tasks_total_s": sum((t[2] - t[1]).total_seconds() for t in tis),
            "queued_to_start_s": statistics.median((t[1] - t[3]).total_seconds() for t in chunks),
            "hosts": sorted({t[4] for t in chunks})}


def _predictions(cfg_path: Path) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(cfg_path.parent / "results.duckdb"), read_only=True) as con:
        return con.execute("SELECT source_key, score FROM predictions WHERE day = $1 ORDER BY source_key",
                           [DAY]).fetchall()


def measure(rows: int = 1_000_000, repeat: int = 2, chunks: int = 8, pg_admin_url: str = cluster.ADMIN_PG,
            redis_db: int = 11) -> dict:
    """1 worker vs 2 workers on one ``rows``-row day; medians of ``repeat`` runs each (see the module docstring).

    Returns ``{"rows", "chunks", "1": {...medians}, "2": {...}, "ratio_wall", "ratio_chunk_phase",
    "identical": bool, "runs": [...]}``; seconds are wall-clock seconds from the metadata DB.
    Raises SystemExit when a run fails.
    """
    with tempfile.TemporaryDirectory(prefix="bench_celery_") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        cfg_path = build(folder, rows)
        build_s = time.perf_counter() - started
        spec = cluster.ClusterSpec(
            home=folder / "airflow_home", db=f"bench_airflow_{uuid.uuid4().hex[:8]}", pg_admin_url=pg_admin_url,
            redis_url=f"redis://127.0.0.1:6379/{redis_db}", redis_prefix=f"bench-{uuid.uuid4().hex[:8]}:",
            api_port=cluster.free_port(), workers=2, configs=[cfg_path], worker_env=dict(THREADS),
            env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False", "AIRFLOW__CORE__PARALLELISM": "4",
                 "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2", "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                 "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"})
        runs: list[dict] = []
        outputs: list[list[tuple]] = []
        try:
            cluster.up(spec)
            cluster.wait_until("the api-server", lambda: cluster.api_healthy(spec.api_port), 300, every=2)
            cluster.wait_until("the DAG", lambda: cluster.meta_query(
                spec, "SELECT 1 FROM serialized_dag WHERE dag_id = %s", [DAG_ID]), 300, every=2)
            per_chunk = -(-rows // chunks)
            # One run first, not counted: the first task processes pay for cold caches (files, model, imports).
            warm = _run(spec, "bench_warmup", per_chunk)
            outputs.append(_predictions(cfg_path))
            print(f"  warm-up, 2 workers: {json.dumps(warm, default=str)}", flush=True)
            for workers in (1, 2):
                if workers == 1:
                    cluster.stop_worker(spec.home, 2)
                else:
                    cluster.start_worker(spec, 2)
                    time.sleep(10)  # let it connect to the broker before the run
                for i in range(repeat):
                    figures = _run(spec, f"bench_w{workers}_{i}", per_chunk)
                    runs.append({"workers": workers, **figures})
                    outputs.append(_predictions(cfg_path))
                    print(f"  {workers} worker(s), run {i + 1}: {json.dumps(figures, default=str)}", flush=True)
        finally:
            cluster.down(spec.home)
            cluster.drop_database(spec)
            cluster.flush_broker(spec.redis_url, spec.redis_prefix)
    medians = {}
    for workers in (1, 2):
        mine = [r for r in runs if r["workers"] == workers]
        medians[str(workers)] = {k: statistics.median(r[k] for r in mine)
                                 for k in ("wall_s", "chunk_phase_s", "chunk_task_s", "tasks_total_s",
                                           "queued_to_start_s", "idle_slot_per_chunk_s")}
        medians[str(workers)]["rows_per_s"] = rows / medians[str(workers)]["wall_s"]
    one, two = medians["1"], medians["2"]
    return {"rows": rows, "chunks": chunks, "repeat": repeat, "build_s": build_s, "1": one, "2": two,
            "ratio_wall": one["wall_s"] / two["wall_s"], "ratio_chunk_phase": one["chunk_phase_s"] / two["chunk_phase_s"],
            "identical": all(o == outputs[0] for o in outputs) and len(outputs[0]) == rows, "runs": runs}


def report(fig: dict) -> None:
    one, two = fig["1"], fig["2"]
    print(f"\n{fig['rows']:,}-row day, {fig['chunks']} chunks, medians of {fig['repeat']} run(s); "
          "threads pinned to 1 per worker")
    print(f"{'':34}{'1 worker':>12}{'2 workers':>12}{'ratio':>9}")
    for key, label in (("wall_s", "DAG run wall (s)"), ("chunk_phase_s", "chunk phase wall (s)"),
                       ("rows_per_s", "throughput (rows/s, run wall)"), ("chunk_task_s", "score_chunk task (s)"),
                       ("queued_to_start_s", "queued -> start per chunk (s)*"),
                       ("idle_slot_per_chunk_s", "idle slot per chunk (s)"), ("tasks_total_s", "all tasks summed (s)")):
        ratio = one[key] / two[key] if two[key] else float("nan")
        if key == "rows_per_s":
            ratio = two[key] / one[key]
        print(f"{label:34}{one[key]:>12.1f}{two[key]:>12.1f}{ratio:>8.2f}x")
    print("* includes waiting in the broker for a free worker; idle slot per chunk = (chunk phase x workers - "
          "summed chunk task time) / chunks: the scheduling gap between one chunk and the next on a worker")
    print(f"speed-up from 2 workers: {fig['ratio_wall']:.2f}x on the run, {fig['ratio_chunk_phase']:.2f}x on the "
          f"chunk phase; outputs identical: {fig['identical']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    fig = measure(args.rows, args.repeat, args.chunks)
    report(fig)
    if args.json:
        args.json.write_text(json.dumps(fig, default=str, indent=1))
    if not fig["identical"]:
        raise SystemExit("outputs differ between runs")


if __name__ == "__main__":
    main()
