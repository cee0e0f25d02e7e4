"""One run engine (issue 23): the DAG path against ``scoring run`` on the same day, and one chunk task's
preparation time at two day sizes, printed side by side.

1. DAG vs CLI: one ``--rows`` day scored by ``scoring run`` (a fresh process) and by ``dag.test()`` of the
   scoring DAG (``tests/dags/dag_runner.py`` in a fresh process with a private Airflow home and SQLite
   metadata database), ``--repeat`` rounds interleaved; the same chunk size for both (``--chunks`` chunks).
   Figures: whole-process wall seconds of each, ``dag.test()``'s own seconds, and DAG / CLI. Each round also
   scores the small training day (``--train-rows`` rows, one chunk) both ways: the fixed cost of each path
   (process start, imports, for the DAG Airflow's own start-up: DAG parsing, ``dag.test()``'s in-process
   execution API, task bookkeeping), and from it DAG / CLI of the day's cost above that fixed cost. Then the
   parts of the big day (the CLI ledger's ``steps``, ``dag.test()``'s task seconds and Airflow's time around
   them) and each process's peak RSS. Each round also runs the control, a DAG of the same shape whose tasks do
   no work (``benchmarks/control_dags/scoring_shape.py``, same ``--chunks``), so Airflow's own cost around
   such a day is measured beside the real DAG; and ``dag_runner`` times the engine's task functions inside
   the DAG's tasks (their ``own`` seconds), which says how much of the DAG's time is the engine's work.
2. Chunk task preparation: the plan of a ``--small`` and a ``--large`` day cut in chunks of the same
   ``--chunk-rows``; then chunk 0 of each is staged by ``plan.score_planned_chunk`` (what a mapped
   ``score_chunk`` task runs) in a fresh process. Figures: the task's seconds until its first batch is read
   (its preparation: source, quality state from the plan's inputs, model load, column selection), the whole
   task's seconds, its peak RSS, and large / small. Flat means the task does not read the whole day.

Both published days are checked: rows_in = scored + quarantined in the ledger, and the DAG's scores equal
the CLI's on every key (max |diff| printed).

    .venv/bin/python benchmarks/bench_engine.py [--rows 2000000] [--chunks 4] [--small 500000]
        [--large 5000000] [--chunk-rows 100000] [--repeat 2] [--train-rows 200000] [--only dag|prep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
BIN = Path(sys.executable).parent

from contenders import BIG_DAY, TRAIN_DAY  # noqa: E402

SMALL_DAY, LARGE_DAY = dt.date(2026, 6, 8), dt.date(2026, 6, 9)

# One chunk task in a fresh process: argv config, plan JSON file, chunk index. Prints its figures as JSON; its
# preparation ends when the chunk loop is entered (source open, quality state, model loaded, columns chosen).
CHUNK_TASK = """
import json, sys, time
t0 = time.perf_counter()
from scoring.config import load_config
from scoring.run import plan as steps, tasks
entered = {}
loop = steps.run_chunks
def timed_loop(*a, **k):
    entered.setdefault("t", time.perf_counter())
    return loop(*a, **k)
steps.run_chunks = timed_loop
cfg = load_config(sys.argv[1]); plan = json.load(open(sys.argv[2]))
t1 = time.perf_counter()
out = tasks.score_chunk(cfg, plan, int(sys.argv[3]))
t2 = time.perf_counter()
print(json.dumps({"prepare_s": entered["t"] - t1, "task_s": t2 - t1, "imports_s": t1 - t0, "rows_in": out["rows_in"]}))
"""


def build(folder: Path, days: list[tuple[dt.date, int]], train_rows: int = 200_000) -> Path:
    """A DuckDB source (a ``train_rows`` training day and ``days``), the sample model trained on it; the config."""
    import duckdb

    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    db = folder / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        for day, n in ((TRAIN_DAY, train_rows), *days):
            for start in range(0, n, 1_000_000):  # generated a million rows at a time (memory)
                batch = generate_day(day, min(1_000_000, n - start), seed=11 + start)
                i = batch.schema.get_field_index("application_id")
                batch = batch.set_column(i, batch.schema.field(i), _shifted(batch.column(i), start))
                con.register("batch", batch)
                if day == TRAIN_DAY:
                    con.execute("CREATE TABLE loan_applications AS SELECT * FROM batch")
                else:
                    con.execute("INSERT INTO loan_applications SELECT * FROM batch")
                con.unregister("batch")
    cfg_text = (ROOT / "scoring.yaml").read_text()
    cfg_text = cfg_text.replace("path: sample_data/sample.duckdb", f"path: {db}")
    cfg_text = cfg_text.replace("store: models", f"store: {folder / 'models'}")
    cfg_text = cfg_text.replace("path: results/results.duckdb", f"path: {folder / 'results.duckdb'}")
    cfg_text = cfg_text.replace("staging_dir: results/staging", f"staging_dir: {folder / 'staging'}")
    cfg_path = folder / "scoring.yaml"
    cfg_path.write_text(cfg_text)
    cfg = load_config(cfg_path)
    mv = train_model(cfg, TRAIN_DAY, TRAIN_DAY)
    write_version_suite(cfg, mv)
    return cfg_path


def _shifted(keys, start: int):
    """Unique keys across the generated pieces of a day (each piece's keys start at the day's base)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.add(keys, pa.scalar(start, keys.type))


def with_chunk_rows(cfg_path: Path, rows: int, name: str) -> Path:
    """A copy of the config whose chunks hold ``rows`` rows (and a memory budget that allows them)."""
    import yaml

    raw = yaml.safe_load(cfg_path.read_text())
    raw.setdefault("chunking", {}).update(rows_per_chunk=rows, memory_budget_mib=4096)
    raw["model"]["challengers"] = []
    # The DAG scores days from its start date on (the repo's config starts later than the benchmark's days).
    raw.setdefault("schedule", {}).update(start_date=str(TRAIN_DAY), retries=0)
    out = cfg_path.with_name(name)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


# Runs the command as its only child and prints the child's peak RSS (KiB) on stderr's last line.
PEAK_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
                "sys.exit(r.returncode)")
PEAK_MIB: list[float] = []  # the peak RSS of each command ``timed`` ran, in order


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``cmd``; its wall seconds (with a ~0.03 s wrapper start) and stdout. Its peak RSS goes to PEAK_MIB."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, *cmd], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=7200, check=False)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{(out.stdout + out.stderr)[-4000:]}")
    peak = [line for line in out.stderr.splitlines() if line.startswith("PEAK_RSS_KIB ")]
    PEAK_MIB.append(int(peak[-1].split()[1]) / 1024 if peak else float("nan"))
    return seconds, out.stdout


def last_run(cfg_path: Path, trigger: str, out: str = "") -> dict:
    """The latest ledger row of ``trigger``; checked successful with rows_in = scored + quarantined."""
    from scoring.config import load_config
    from scoring.storage.results import open_results

    rows = [r for r in open_results(load_config(cfg_path).results).runs(limit=20).to_pylist()
            if r["trigger"] == trigger]
    if not rows:
        raise SystemExit(f"no {trigger} run in the ledger:\n{out[-4000:]}")
    row = rows[0]
    assert row["status"] == "success" and row["rows_in"] == row["rows_scored"] + row["rows_rejected"], row
    return row


def scores(cfg_path: Path, day: dt.date):
    from scoring.config import load_config
    from scoring.storage.results import open_results

    cfg = load_config(cfg_path)
    return open_results(cfg.results).predictions(day, cfg.model.name).to_pandas().set_index("source_key")["score"]


def dag_day(env: dict, day: dt.date, dag_id: str = "scoring_loan_default") -> tuple[float, dict, str]:
    """Run DAG ``dag_id`` for ``day`` with ``dag.test()`` in a new process (``tests.dags.dag_runner``).

    Returns (whole-process wall seconds, dag_runner's JSON result: ``state``, ``seconds`` of ``dag.test()``,
    ``durations``, ``own``; the process's output); raises AssertionError when the DAG run does not succeed."""
    seconds, out = timed([sys.executable, "-m", "tests.dags.dag_runner", "--dag-id", dag_id,
                          "--day", str(day)], env)
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert result["state"] == "success", result
    return seconds, result, out


def dag_vs_cli(folder: Path, cfg_path: Path, rows: int, chunks: int, repeat: int) -> dict:
    from tests.dags.airflow_env import airflow_env

    cfg = with_chunk_rows(cfg_path, -(-rows // chunks), "scoring_dag_cli.yaml")
    home = folder / "airflow_home"
    home.mkdir()
    env = airflow_env(home, [cfg])
    timed([str(BIN / "airflow"), "db", "migrate"], env)
    # The control: a DAG of the same shape whose tasks do no work (benchmarks/control_dags), same home.
    control_env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "benchmarks" / "control_dags"),
                   "SCORING_SHAPE_CHUNKS": str(chunks)}
    cli, dag, dag_own, fixed_cli, fixed_dag, fixed_dag_own = [], [], [], [], [], []
    control, control_own, engine_own = [], [], []  # control process / dag.test() s; the engine's own s per round
    cli_steps, dag_tasks, cli_rss, dag_rss = [], [], [], []  # per round: steps, task seconds, peak RSS
    for _ in range(repeat):
        seconds, _ = timed([str(BIN / "scoring"), "run", "-c", str(cfg), "--date", str(BIG_DAY), "--show", "0"])
        cli.append(seconds)
        cli_rss.append(PEAK_MIB[-1])
        cli_row, cli_scores = last_run(cfg, "cli"), scores(cfg, BIG_DAY)
        seconds, result, out = dag_day(env, BIG_DAY)
        dag.append(seconds)
        dag_rss.append(PEAK_MIB[-1])
        dag_own.append(result["seconds"])
        dag_row = last_run(cfg, "airflow", out)
        assert dag_row["started_at"] > cli_row["started_at"] and json.loads(dag_row["details"])["chunks"] == chunks
        cli_steps.append({**json.loads(cli_row["details"]).get("steps", {}), "run_s": cli_row["duration_s"]})
        dag_tasks.append(_task_seconds(result))
        engine_own.append(result.get("own") or {})
        seconds, noop, _ = dag_day(control_env, BIG_DAY, "scoring_shape_noop")
        control.append(seconds)
        control_own.append(noop["seconds"])
        # The fixed cost of each path: the same steps on the small training day (one chunk).
        seconds, _ = timed([str(BIN / "scoring"), "run", "-c", str(cfg), "--date", str(TRAIN_DAY), "--show", "0"])
        fixed_cli.append(seconds)
        seconds, fixed, _ = dag_day(env, TRAIN_DAY)
        fixed_dag.append(seconds)
        fixed_dag_own.append(fixed["seconds"])
    dag_scores = scores(cfg, BIG_DAY)
    diff = float((dag_scores - cli_scores.reindex(dag_scores.index)).abs().max())
    assert len(dag_scores) == len(cli_scores) == cli_row["rows_scored"], (len(dag_scores), len(cli_scores))
    return {"rows": rows, "chunks": chunks, "cli_s": cli, "dag_s": dag, "dag_test_s": dag_own,
            "max_abs_diff": diff, "scored": cli_row["rows_scored"], "quarantined": cli_row["rows_rejected"],
            "fixed_cli_s": fixed_cli, "fixed_dag_s": fixed_dag, "fixed_dag_test_s": fixed_dag_own,
            "cli_steps": cli_steps, "dag_tasks": dag_tasks, "cli_rss_mib": cli_rss, "dag_rss_mib": dag_rss,
            "control_s": control, "control_test_s": control_own, "engine_own": engine_own}


def _task_seconds(result: dict) -> dict:
    """The DAG run's task seconds (``dag_runner``'s ``durations``), mapped chunk tasks summed, and the rest
    of ``dag.test()``'s own seconds (Airflow between and around the tasks)."""
    out: dict = {}
    for name, seconds in (result.get("durations") or {}).items():
        task = "score_chunk" if name.startswith("score_chunk") else name
        out[task] = out.get(task, 0.0) + float(seconds or 0.0)
    out["airflow_other"] = result["seconds"] - sum(out.values())
    return out


def chunk_prep(folder: Path, cfg_path: Path, sizes: tuple[int, int], chunk_rows: int, repeat: int) -> dict:
    from scoring.config import load_config
    from scoring.dates import DataInterval
    from scoring.run import tasks

    cfg_file = with_chunk_rows(cfg_path, chunk_rows, "scoring_chunks.yaml")
    cfg = load_config(cfg_file)
    out: dict = {"chunk_rows": chunk_rows}
    for label, day, rows in (("small", SMALL_DAY, sizes[0]), ("large", LARGE_DAY, sizes[1])):
        started = time.perf_counter()
        planned = tasks.plan_run(cfg, DataInterval.for_day(day, cfg.timezone), key=f"bench_{label}")
        plan_s = time.perf_counter() - started
        assert planned["rows"] == rows, (planned["rows"], rows)
        plan_file = folder / f"plan_{label}.json"
        plan_file.write_text(json.dumps(planned))
        runs = []
        for i in range(repeat):
            _, text = timed([sys.executable, "-c", CHUNK_TASK, str(cfg_file), str(plan_file), str(i)],
                            {**os.environ, "PYTHONPATH": str(ROOT)})
            runs.append({**json.loads(text.strip().splitlines()[-1]), "rss_mib": PEAK_MIB[-1]})
        out[label] = {"rows": rows, "chunks": len(planned["chunks"]), "plan_s": plan_s,
                      "prepare_s": [r["prepare_s"] for r in runs], "task_s": [r["task_s"] for r in runs],
                      "chunk_rows_in": [r["rows_in"] for r in runs], "rss_mib": [r["rss_mib"] for r in runs]}
    return out


def report(a: dict | None, b: dict | None) -> None:
    med = statistics.median
    if a:
        print(f"\nDAG vs CLI: one day of {a['rows']:,} rows in {a['chunks']} chunks, {len(a['cli_s'])} rounds "
              f"(medians; whole processes)")
        print(f"  scoring run            {med(a['cli_s']):8.1f} s")
        print(f"  dag.test() process     {med(a['dag_s']):8.1f} s   (dag.test() itself {med(a['dag_test_s']):.1f} s)")
        print(f"  DAG / CLI              {med(a['dag_s']) / med(a['cli_s']):8.2f}x   (dag.test() itself / CLI "
              f"{med(a['dag_test_s']) / med(a['cli_s']):.2f}x; target <= 1.15)")
        print(f"  scored {a['scored']:,}, quarantined {a['quarantined']:,}; DAG vs CLI scores max |diff| "
              f"{a['max_abs_diff']:.3g}")
        fc, fd, fo = med(a["fixed_cli_s"]), med(a["fixed_dag_s"]), med(a["fixed_dag_test_s"])
        print(f"  fixed cost (the small training day, one chunk): scoring run {fc:.1f} s, dag.test() process "
              f"{fd:.1f} s (dag.test() itself {fo:.1f} s)")
        print(f"  above the fixed cost: scoring run {med(a['cli_s']) - fc:.1f} s, dag.test() process "
              f"{med(a['dag_s']) - fd:.1f} s, DAG / CLI {(med(a['dag_s']) - fd) / (med(a['cli_s']) - fc):.2f}x")
        if a.get("cli_steps") and a.get("dag_tasks"):
            steps = {k: med([r.get(k, 0.0) for r in a["cli_steps"]]) for k in a["cli_steps"][0]}
            print("  the big day's parts (medians): scoring run's own steps "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())
                  + f"; process start-up and exit {med(a['cli_s']) - steps.get('run_s', 0.0):.1f} s")
            tasks = {k: med([r.get(k, 0.0) for r in a["dag_tasks"]]) for k in a["dag_tasks"][0]}
            print("  dag.test() tasks " + ", ".join(f"{k} {v:.1f} s" for k, v in tasks.items())
                  + f"; process start-up, DAG parse and exit {med(a['dag_s']) - med(a['dag_test_s']):.1f} s")
        if a.get("control_s"):
            ctl, ctl_own = med(a["control_s"]), med(a["control_test_s"])
            own = {k: med([r.get(k, 0.0) for r in a["engine_own"]]) for k in a["engine_own"][0]}
            total = sum(own.values())
            print(f"  Airflow alone: the same DAG shape, tasks doing no work (benchmarks/control_dags): process "
                  f"{ctl:.1f} s (dag.test() itself {ctl_own:.1f} s)")
            print(f"  DAG process minus that control {med(a['dag_s']) - ctl:.1f} s; / scoring run "
                  f"{(med(a['dag_s']) - ctl) / med(a['cli_s']):.2f}x")
            print("  the engine's own seconds inside the DAG's tasks (scoring.run.tasks calls): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in own.items())
                  + f"; total {total:.1f} s = {total / med(a['cli_s']):.2f}x of scoring run's whole process, "
                  f"{total / med(a['dag_test_s']):.0%} of dag.test() itself")
        if a.get("cli_rss_mib"):
            print(f"  peak RSS of the big day: scoring run {med(a['cli_rss_mib']):.0f} MiB, dag.test() process "
                  f"{med(a['dag_rss_mib']):.0f} MiB (all tasks in one process)")
    if b:
        s, large = b["small"], b["large"]
        print(f"\nOne chunk task ({b['chunk_rows']:,} rows a chunk), fresh process, medians of "
              f"{len(s['task_s'])} chunks")
        print(f"  {'day rows':>10} {'chunks':>7} {'plan s':>8} {'prepare s':>10} {'task s':>8} {'peak MiB':>9}")
        for x in (s, large):
            print(f"  {x['rows']:>10,} {x['chunks']:>7} {x['plan_s']:>8.2f} {med(x['prepare_s']):>10.2f} "
                  f"{med(x['task_s']):>8.2f} {med(x.get('rss_mib') or [float('nan')]):>9.0f}")
        print(f"  large / small: prepare {med(large['prepare_s']) / med(s['prepare_s']):.2f}x, task "
              f"{med(large['task_s']) / med(s['task_s']):.2f}x, plan {large['plan_s'] / s['plan_s']:.2f}x "
              f"(days {large['rows'] / s['rows']:.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--small", type=int, default=500_000)
    parser.add_argument("--large", type=int, default=5_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--only", choices=("dag", "prep"), default=None)
    args = parser.parse_args()
    days = [] if args.only == "prep" else [(BIG_DAY, args.rows)]
    if args.only != "dag":
        days += [(SMALL_DAY, args.small), (LARGE_DAY, args.large)]
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        folder = Path(tmp)
        print(f"building: {', '.join(f'{d} {n:,} rows' for d, n in days)}; training the sample model ...",
              flush=True)
        cfg_path = build(folder, days, args.train_rows)
        a = None if args.only == "prep" else dag_vs_cli(folder, cfg_path, args.rows, args.chunks, args.repeat)
        if a:
            report(a, None)
        b = None if args.only == "dag" else chunk_prep(folder, cfg_path, (args.small, args.large), args.chunk_rows,
                                                       args.repeat)
        report(None, b)


if __name__ == "__main__":
    main()
