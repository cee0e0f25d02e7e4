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

With ``--pg URL`` the day is a PostgreSQL table (binary COPY into a throwaway schema) and the results go to
PostgreSQL too. Several ``--chunks`` counts are measured on the same cluster. Per run it also splits the wall time
into the parallel part (the chunk phase) and the serial part (plan, publish, record_ledger when it runs, and the
scheduler hand-offs between them), reads each chunk task's preparation time (``prepare_s`` of its XCom: source
opened, quality state, model loaded, before the first row is read) and its Airflow overhead (task duration
minus the time in the engine), and projects the speed-up of N workers from the 1-worker figures (Amdahl, with
the chunk granularity: serial + ceil(chunks / N) x chunk phase / chunks).

    .venv/bin/python benchmarks/bench_celery_workers.py [--rows 1000000] [--repeat 2] [--chunks 8 32]
        [--pg postgresql://postgres@127.0.0.1:5432/test]

``measure(rows, repeat, chunks)`` returns the figures as a dict (for a combined scale-out benchmark). Staging is
local here (both workers share this host's disk); the end-to-end test covers S3 staging and isolated workers.
Everything started is stopped by pid, the metadata DB and the PostgreSQL schema dropped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
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
SERIAL_TASKS = ("plan", "publish", "record_ledger")  # the DAG before 2026-12-07 also had validate
# Scheduler hand-off settings of the benchmark's cluster: an idle scheduler loop sleeps 0.25 s, not 1 s, before
# it looks for a finished task's downstream tasks; the DAG file, parsed at start, is not re-parsed every 30 s
# (CPU the 2-core machine's workers need). A worker's task supervisor waits in select() for at most
# [workers] min_heartbeat_interval (default 5 s) per loop: once the task process has closed its sockets but is
# still shutting down (interpreter exit), nothing wakes it, so the worker's slot stayed busy up to 5 s after
# each task; 1 s bounds that wait (at the price of one heartbeat a second per running task).
HANDOFF_ENV = {
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
}


def build(folder: Path, rows: int, pg: tuple[str, str] | None = None) -> Path:
    """Source with the training day and the benchmark day, the trained sample model, and a config.

    ``pg`` = (URL, schema): the source table and the results live in that PostgreSQL schema (created here)."""
    import yaml

    from scoring.config import load_config
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    raw = yaml.safe_load((ROOT / "scoring.yaml").read_text())
    if pg:
        from bench_postgres import load_postgres

        url, schema = pg
        load_postgres(url, schema, rows, days=(TRAIN_DAY, DAY), train_rows=50_000)
        raw["source"] = {**raw["source"], "kind": "postgres", "url": url, "table": f"{schema}.loan_applications"}
        raw["source"].pop("path", None)
        raw["results"].update({"kind": "postgres", "url": url, "schema": schema, "table": "predictions",
                               "staging_dir": str(folder / "staging")})
        raw["results"].pop("path", None)
    else:
        import duckdb

        from sample_data.generate import generate_day

        db = folder / "source.duckdb"
        with duckdb.connect(str(db)) as con:
            for day, n in ((TRAIN_DAY, 50_000), (DAY, rows)):
                batch = generate_day(day, n, seed=11)
                con.register("batch", batch)
                con.execute("CREATE TABLE IF NOT EXISTS loan_applications AS SELECT * FROM batch LIMIT 0")
                con.execute("INSERT INTO loan_applications SELECT * FROM batch")
                con.unregister("batch")
        raw["source"].update({"path": str(db)})
        raw["results"].update({"path": str(folder / "results.duckdb"), "staging_dir": str(folder / "staging"),
                               "reader_export": False})
    raw["model"].update({"store": str(folder / "models")})
    # The model store and staging are this host's folders, which every worker of the benchmark's cluster shares
    # (the end-to-end test covers the shared-nothing deployment).
    raw["deployment"] = {**(raw.get("deployment") or {}), "single_host": True}
    raw["workers"] = 2  # max_active_tis_per_dagrun of score_chunk
    raw["deployment"] = {"single_host": True}  # DuckDB results and local staging: every worker is this machine
    # No scheduled runs (a Feb 29 cron has no interval ending before 2028); the benchmark's manual runs score DAY,
    # which must not be before start_date.
    raw["schedule"] = {**(raw.get("schedule") or {}), "start_date": TRAIN_DAY.isoformat(), "cron": "0 0 29 2 *",
                       "catchup": False, "retries": 0, "task_timeout_min": 30}
    cfg_path = folder / "scoring.yaml"
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(cfg_path)
    write_version_suite(cfg, train_model(cfg, TRAIN_DAY, TRAIN_DAY))
    return cfg_path


def _quiet(spec: cluster.ClusterSpec) -> bool:
    """No DAG run of any DAG (the report DAG a publish triggers included) is queued or running."""
    return not cluster.meta_query(spec, "SELECT 1 FROM dag_run WHERE state IN ('queued', 'running') LIMIT 1")


def _fresh_day(pg: tuple[str, str] | None) -> None:
    """Remove the day's published rows (not timed): each run then publishes a new partition, as a daily run
    does, instead of replacing and re-reading the previous run's 1M rows. The ledger keeps its rows."""
    if not pg:
        return
    import psycopg

    with psycopg.connect(pg[0], autocommit=True) as con:
        for table in ("predictions", "quarantine"):
            if con.execute("SELECT to_regclass(%s)", [f'"{pg[1]}".{table}']).fetchone()[0]:
                con.execute(f'DELETE FROM "{pg[1]}".{table} WHERE day = %s', [DAY])
                con.execute(f'VACUUM ANALYZE "{pg[1]}".{table}')


def _run(spec: cluster.ClusterSpec, run_id: str, rows_per_chunk: int, pg: tuple[str, str] | None = None) -> dict:
    # The report DAG the previous run's publish triggered would take the worker slots and the publish pool.
    cluster.wait_until("the previous runs to end", lambda: _quiet(spec), RUN_TIMEOUT_S, every=1)
    _fresh_day(pg)
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
    tis = cluster.meta_query(spec, "SELECT task_id, start_date, end_date, queued_dttm, hostname, map_index "
                             "FROM task_instance WHERE dag_id = %s AND run_id = %s", [DAG_ID, run_id])
    chunks = [t for t in tis if t[0] == "score_chunk"]
    chunk_s = {t[5]: (t[2] - t[1]).total_seconds() for t in chunks}
    first, last = min(t[1] for t in chunks), max(t[2] for t in chunks)
    phase = (last - first).total_seconds()
    idle = (phase * len({t[4] for t in chunks}) - sum(chunk_s.values())) / len(chunks)
    wall = (end - start).total_seconds()
    # A serial task that did not run has no start (record_ledger is skipped when nothing failed; DAGs of
    # earlier versions had a validate task).
    ran = [t for t in tis if t[0] in SERIAL_TASKS and t[1] is not None and t[2] is not None]
    serial = {t[0]: (t[2] - t[1]).total_seconds() for t in ran}
    by_id = {t[0]: t for t in ran}
    # Each scheduler hand-off: from the end of one step to the start of the next (queued in between).
    marks = [("run_start", start)]
    for name in SERIAL_TASKS:
        if name == "publish":
            marks += [("chunks", first), ("chunks_end", last)]
        if name in by_id:
            marks += [(name, by_id[name][1]), (f"{name}_end", by_id[name][2])]
    marks.append(("run_end", end))
    gaps = {f"gap_to_{b[0]}_s": (b[1] - a[1]).total_seconds() for a, b in zip(marks, marks[1:], strict=False)
            if not b[0].endswith("_end") or b[0] == "run_end"}
    serial.update({f"{name}": 0.0 for name in SERIAL_TASKS if name not in serial})  # did not run: 0 s
    xcoms = cluster.meta_query(spec, "SELECT map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s AND "
                               "task_id = 'score_chunk' AND key = 'return_value'", [DAG_ID, run_id])
    manifests = {i: json.loads(v) if isinstance(v, str) else v for i, v in xcoms}
    prepare = [m["prepare_s"] for m in manifests.values() if "prepare_s" in m]
    overhead = [chunk_s[i] - m["stage_s"] for i, m in manifests.items() if "stage_s" in m and i in chunk_s]
    return {"wall_s": wall, "chunk_phase_s": phase, "chunks": len(chunks),
            "idle_slot_per_chunk_s": max(0.0, idle),
            "chunk_task_s": statistics.median(chunk_s.values()),
            "tasks_total_s": sum((t[2] - t[1]).total_seconds() for t in tis),
            "queued_to_start_s": statistics.median((t[1] - t[3]).total_seconds() for t in chunks),
            "serial_s": wall - phase, **{f"{k}_s": v for k, v in serial.items()},
            "handoffs_s": wall - phase - sum(serial.values()), **gaps,
            "prepare_s": statistics.median(prepare) if prepare else float("nan"),
            "airflow_overhead_s": statistics.median(overhead) if overhead else float("nan"),
            "hosts": sorted({t[4] for t in chunks})}


def _predictions(cfg_path: Path, pg: tuple[str, str] | None = None) -> tuple[list[tuple], tuple]:
    """The day's published (key, score) rows, and the last ledger row's (rows_in, rows_scored, rows_rejected)."""
    ledger = "SELECT rows_in, rows_scored, rows_rejected FROM {}runs ORDER BY started_at DESC LIMIT 1"
    if pg:
        import psycopg

        with psycopg.connect(pg[0]) as con:
            rows = con.execute(f'SELECT source_key, score FROM "{pg[1]}".predictions WHERE day = %s '
                               "ORDER BY source_key", [DAY]).fetchall()
            counts = con.execute(ledger.format(f'"{pg[1]}".')).fetchone()
            return [(str(k), float(v)) for k, v in rows], tuple(counts)
    import duckdb

    with duckdb.connect(str(cfg_path.parent / "results.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT source_key, score FROM predictions WHERE day = $1 ORDER BY source_key",
                           [DAY]).fetchall()
        return rows, tuple(con.execute(ledger.format("")).fetchone())


def _complete(outputs: list[tuple[list[tuple], tuple]], rows: int) -> bool:
    """Every run published the same keys and scores, and its ledger says rows_in = rows = scored + quarantined
    with scored = the published rows."""
    first = outputs[0][0]
    return all(o == first and counts[0] == rows == counts[1] + counts[2] and counts[1] == len(o)
               for o, counts in outputs)


FIGURES = ("wall_s", "chunk_phase_s", "chunk_task_s", "tasks_total_s", "queued_to_start_s", "idle_slot_per_chunk_s",
           "serial_s", "plan_s", "publish_s", "record_ledger_s", "handoffs_s", "prepare_s",
           "airflow_overhead_s", *(f"gap_to_{g}_s" for g in ("plan", "chunks", "publish", "record_ledger",
                                                               "run_end")))


def project(one: dict, chunks: int, workers: int) -> float:
    """Wall time of ``workers`` workers projected from a 1-worker run's medians: the serial part, plus the chunk
    phase divided among the workers in whole chunks (a worker scores ceil(chunks / workers) of them)."""
    return one["serial_s"] + math.ceil(chunks / workers) * one["chunk_phase_s"] / chunks


def measure(rows: int = 1_000_000, repeat: int = 2, chunks: int | list[int] = 8,
            pg_admin_url: str = cluster.ADMIN_PG, redis_db: int = 11, pg_url: str | None = None,
            env: dict[str, str] | None = None) -> dict:
    """1 worker vs 2 workers on one ``rows``-row day, for each count of ``chunks``; medians of ``repeat`` runs
    each (see the module docstring). ``pg_url``: PostgreSQL source and results. ``env``: extra Airflow settings.

    Returns ``{"rows", "repeat", "by_chunks": {chunks: {"1": {...medians}, "2": {...}, "ratio_wall",
    "ratio_chunk_phase", "serial_share_1", "projected": {workers: seconds}}}, "identical": bool, "runs": [...]}``;
    with a single chunk count its figures are also at the top level (``"1"``, ``"2"``, ``"ratio_wall"``, ...).
    Seconds are wall-clock seconds from the metadata DB. Raises SystemExit when a run fails.
    """
    import uuid as _uuid

    counts = [chunks] if isinstance(chunks, int) else list(chunks)
    pg = (pg_url, f"bench_celery_{_uuid.uuid4().hex[:8]}") if pg_url else None
    with tempfile.TemporaryDirectory(prefix="bench_celery_") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        runs: list[dict] = []
        outputs: list[tuple[list[tuple], tuple]] = []
        spec = cluster.ClusterSpec(
            home=folder / "airflow_home", db=f"bench_airflow_{uuid.uuid4().hex[:8]}", pg_admin_url=pg_admin_url,
            redis_url=f"redis://127.0.0.1:6379/{redis_db}", redis_prefix=f"bench-{uuid.uuid4().hex[:8]}:",
            api_port=cluster.free_port(), workers=2, worker_env=dict(THREADS),
            env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False", "AIRFLOW__CORE__PARALLELISM": "4",
                 "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", **HANDOFF_ENV, **(env or {})})
        try:
            cfg_path = build(folder, rows, pg)
            spec.configs = [cfg_path]
            build_s = time.perf_counter() - started
            print(f"  built the {rows:,}-row day and the model in {build_s:.0f} s", flush=True)
            cluster.up(spec)
            cluster.wait_until("the api-server", lambda: cluster.api_healthy(spec.api_port), 300, every=2)
            cluster.wait_until("the DAG", lambda: cluster.meta_query(
                spec, "SELECT 1 FROM serialized_dag WHERE dag_id = %s", [DAG_ID]), 300, every=2)
            # One run first, not counted: the first task processes pay for cold caches (files, model, imports).
            warm = _run(spec, "bench_warmup", -(-rows // counts[0]), pg)
            outputs.append(_predictions(cfg_path, pg))
            print(f"  warm-up, 2 workers: {json.dumps(warm, default=str)}", flush=True)
            for workers in (1, 2):
                if workers == 1:
                    cluster.stop_worker(spec.home, 2)
                else:
                    cluster.start_worker(spec, 2)
                    time.sleep(10)  # let it connect to the broker before the run
                for i in range(repeat):
                    for count in counts:
                        figures = _run(spec, f"bench_w{workers}_c{count}_{i}", -(-rows // count), pg)
                        runs.append({"workers": workers, "planned_chunks": count, **figures})
                        outputs.append(_predictions(cfg_path, pg))
                        print(f"  {workers} worker(s), {count} chunks, run {i + 1}: "
                              f"{json.dumps(figures, default=str)}", flush=True)
        finally:
            cluster.down(spec.home)
            cluster.drop_database(spec)
            cluster.flush_broker(spec.redis_url, spec.redis_prefix)
            if pg:
                from bench_postgres import drop_schemas

                drop_schemas(*pg)
    by_chunks = {}
    for count in counts:
        medians = {}
        for workers in (1, 2):
            mine = [r for r in runs if r["workers"] == workers and r["planned_chunks"] == count]
            medians[str(workers)] = {k: statistics.median(r.get(k, float("nan")) for r in mine) for k in FIGURES}
            medians[str(workers)]["rows_per_s"] = rows / medians[str(workers)]["wall_s"]
        one, two = medians["1"], medians["2"]
        by_chunks[count] = {
            "1": one, "2": two, "ratio_wall": one["wall_s"] / two["wall_s"],
            "ratio_chunk_phase": one["chunk_phase_s"] / two["chunk_phase_s"],
            "serial_share_1": one["serial_s"] / one["wall_s"],
            "projected": {n: project(one, count, n) for n in (1, 2, 4, 8)}}
    out = {"rows": rows, "repeat": repeat, "build_s": build_s, "by_chunks": by_chunks,
           "identical": _complete(outputs, rows), "runs": runs,
           "source": "postgres" if pg else "duckdb"}
    if len(counts) == 1:
        out.update(chunks=counts[0], **by_chunks[counts[0]])
    return out


def report(fig: dict) -> None:
    for count, part in fig["by_chunks"].items():
        one, two = part["1"], part["2"]
        print(f"\n{fig['rows']:,}-row {fig['source']} day, {count} chunks, medians of {fig['repeat']} run(s); "
              "threads pinned to 1 per worker")
        print(f"{'':38}{'1 worker':>10}{'2 workers':>11}{'ratio':>8}")
        for key, label in (("wall_s", "DAG run wall (s)"), ("chunk_phase_s", "chunk phase wall (s)"),
                           ("rows_per_s", "throughput (rows/s, run wall)"), ("chunk_task_s", "score_chunk task (s)"),
                           ("prepare_s", "  of which preparation (s)"),
                           ("airflow_overhead_s", "  of which Airflow task overhead (s)"),
                           ("queued_to_start_s", "queued -> start per chunk (s)*"),
                           ("idle_slot_per_chunk_s", "idle slot per chunk (s)"),
                           ("serial_s", "serial part of the run (s)"), ("plan_s", "  plan task (s)"),
                           ("publish_s", "  publish task (s)"),
                           ("record_ledger_s", "  record_ledger task (s)"),
                           ("handoffs_s", "  scheduler hand-offs (s)"),
                           *((f"gap_to_{g}_s", f"    hand-off to {g} (s)") for g in (
                               "plan", "chunks", "publish", "record_ledger", "run_end")),
                           ("tasks_total_s", "all tasks summed (s)")):
            ratio = one[key] / two[key] if two[key] else float("nan")
            if key == "rows_per_s":
                ratio = two[key] / one[key]
            print(f"{label:38}{one[key]:>10.1f}{two[key]:>11.1f}{ratio:>7.2f}x")
        proj = part["projected"]
        print(f"serial share of the 1-worker wall: {part['serial_share_1']:.1%} ({one['serial_s']:.1f} of "
              f"{one['wall_s']:.1f} s); speed-up from 2 workers: {part['ratio_wall']:.2f}x measured, "
              f"{proj[1] / proj[2]:.2f}x projected; projected for 4 / 8 workers: {proj[1] / proj[4]:.2f}x / "
              f"{proj[1] / proj[8]:.2f}x")
    print("* includes waiting in the broker for a free worker; idle slot per chunk = (chunk phase x workers - "
          "summed chunk task time) / chunks; projection = serial + ceil(chunks / N) x chunk phase / chunks, from "
          "the 1-worker medians")
    print(f"outputs identical across all runs: {fig['identical']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunks", type=int, nargs="+", default=[8])
    parser.add_argument("--pg", default=None, help="PostgreSQL URL: source table and results there")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--set", action="append", default=[], metavar="AIRFLOW__SECTION__KEY=VALUE",
                        help="an Airflow setting of every component (repeatable), e.g. to compare hand-off settings")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.set)
    fig = measure(args.rows, args.repeat, args.chunks, pg_url=args.pg, env=env)
    report(fig)
    if args.json:
        args.json.write_text(json.dumps(fig, default=str, indent=1))
    if not fig["identical"]:
        raise SystemExit("outputs differ between runs")


if __name__ == "__main__":
    main()
