"""`scoring run` wall time on the demo day, before and after Data Docs left the scoring path.

Exports the code of ``--before`` (default: the commit before "Data Docs off the scoring path") with
``git archive`` into a temporary folder and runs its CLI and this checkout's CLI side by side, alternating,
on the same demo source (``make demo``'s sample: 60 days, 5,000 rows a day, trained on the first 40) with
the same model. Each run is a fresh process (``python -m scoring.cli run``), so the old one pays the
``great_expectations`` import as a daily run does. Also times ``scoring docs --day D``, where the page is
built now. Prints medians.

    .venv/bin/python benchmarks/bench_docs_offpath.py [--repeat 5] [--rows-per-day 5000] [--before REV]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
MARK = "Data Docs off the scoring path"


def before_commit() -> str:
    first = subprocess.run(["git", "log", "--format=%H", f"--grep=^{MARK}", "--reverse"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    if not first:
        raise SystemExit(f"no commit starting with {MARK!r} in this checkout's history; pass --before")
    return first[0] + "^"


def export(rev: str, target: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def cli(tree: Path, *args: str, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(tree), "GX_ANALYTICS_ENABLED": "false"}
    env.pop("SCORING_CONFIG", None)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "scoring.cli", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=900)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{tree.name}: scoring {' '.join(args)} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return seconds, out


def last_run(results: Path) -> dict:
    with duckdb.connect(str(results), read_only=True) as con:
        duration, details = con.execute("SELECT duration_s, details FROM runs ORDER BY started_at DESC LIMIT 1"
                                        ).fetchone()
    return {"duration_s": duration, **json.loads(details)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=5000)
    parser.add_argument("--before", default=None, help="git revision of the old code (default: before the change)")
    args = parser.parse_args()
    rev = args.before or before_commit()
    with tempfile.TemporaryDirectory(prefix="bench-docs-") as tmp:
        tmp_path = Path(tmp)
        trees = {"before": export(rev, tmp_path / "before"), "after": ROOT}
        for name, tree in trees.items():
            probe = subprocess.run([sys.executable, "-c", "import scoring; print(scoring.__file__)"],
                                   env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tmp, capture_output=True, text=True)
            assert probe.stdout.strip().startswith(str(tree)), (name, probe.stdout)
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        first = yesterday - dt.timedelta(days=args.days - 1)
        demo = tmp_path / "demo"
        demo.mkdir()
        shutil.copy(ROOT / "scoring.yaml", demo / "scoring.yaml")
        cli(ROOT, "sample-data", "--days", str(args.days), "--rows-per-day", str(args.rows_per_day), cwd=demo)
        cli(ROOT, "train", "--start", str(first), "--end", str(yesterday - dt.timedelta(days=20)), "-c",
            str(demo / "scoring.yaml"), cwd=demo)
        folders = {}
        for name in trees:  # the same source, model and suite; separate results and Data Docs
            folder = tmp_path / f"run_{name}"
            shutil.copytree(demo, folder, ignore=shutil.ignore_patterns("results"))
            folders[name] = folder
        walls: dict[str, list[float]] = {name: [] for name in trees}
        ledger: dict[str, list[float]] = {name: [] for name in trees}
        docs_in_run: list[float] = []
        for i in range(args.repeat):
            for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
                cfg = str(folders[name] / "scoring.yaml")
                seconds, _ = cli(trees[name], "run", "--date", str(yesterday), "--show", "0", "-c", cfg,
                                 cwd=folders[name])
                walls[name].append(seconds)
                run = last_run(folders[name] / "results" / "results.duckdb")
                ledger[name].append(run["duration_s"])
                if name == "before":
                    docs_in_run.append(run.get("timings", {}).get("data_docs_s", 0.0))
        docs_walls = [cli(ROOT, "docs", "--day", str(yesterday), "-c", str(folders["after"] / "scoring.yaml"),
                          cwd=folders["after"])[0] for _ in range(max(1, args.repeat // 2))]
        med = {name: statistics.median(v) for name, v in walls.items()}
        print(f"scoring run on {yesterday} ({args.rows_per_day:,} rows), {args.repeat} runs each, alternating; "
              f"before = {rev} ({subprocess.run(['git', 'rev-parse', '--short', rev], cwd=ROOT, capture_output=True, text=True).stdout.strip()}), "
              f"after = this checkout; {os.cpu_count()} CPUs")
        print(f"{'':34}{'before':>10}{'after':>10}{'saved':>10}")
        print(f"{'wall time, process (median s)':34}{med['before']:>10.2f}{med['after']:>10.2f}"
              f"{med['before'] - med['after']:>10.2f}  ({1 - med['after'] / med['before']:.0%})")
        lb, la = statistics.median(ledger["before"]), statistics.median(ledger["after"])
        print(f"{'ledger duration_s (median s)':34}{lb:>10.2f}{la:>10.2f}{lb - la:>10.2f}")
        print(f"{'  of which Data Docs in the run':34}{statistics.median(docs_in_run):>10.2f}{0.0:>10.2f}")
        print(f"{'scoring docs --day (median s)':34}{'':>10}{statistics.median(docs_walls):>10.2f}"
              "  (now on demand / in the report DAG)")
        print("all wall times: " + "; ".join(f"{n}: {', '.join(f'{s:.2f}' for s in v)}" for n, v in walls.items()))


if __name__ == "__main__":
    main()
