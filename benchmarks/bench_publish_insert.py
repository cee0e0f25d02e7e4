"""Why the DuckDB publish inserts on one thread (``DuckDBResults.publish``): a day's partition replaced in a
results-like table, DuckDB's insert on its default threads against one thread, side by side in one run.

Writes ``--rows`` prediction rows as staged chunks (lz4 Parquet files of ``--chunk`` rows, unique text keys, as
``Stage.write`` stages them), then, per contender and round (interleaved), in a fresh database file holding
another day: BEGIN, DELETE the day, INSERT it from the staged files (``read_parquet``), COMMIT (process CPU and
wall of each step), then CHECKPOINT (what closing the file does), and checks that the rows kept their staged
order. Prints medians, the ratio one thread / default and the file sizes.

    .venv/bin/python benchmarks/bench_publish_insert.py [--rows 2000000] [--chunk 125000] [--repeat 3]
        [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAY = dt.date(2026, 6, 2)
TABLE = ("CREATE TABLE predictions (source_key VARCHAR NOT NULL, score DOUBLE NOT NULL, label TINYINT, "
         "predicted_class VARCHAR, probabilities VARCHAR, model_name VARCHAR NOT NULL, model_version INTEGER NOT "
         "NULL, run_id VARCHAR NOT NULL, day DATE NOT NULL, scored_at TIMESTAMPTZ NOT NULL)")
INSERT = ("INSERT INTO predictions SELECT source_key, score, label, predicted_class, probabilities, 'm', 1, 'r', $1, "
          "now() FROM read_parquet($2, union_by_name = true)")


def stage(folder: Path, rows: int, chunk: int) -> list[str]:
    """Staged prediction chunks of ``rows`` rows in all; their paths in order."""
    rng = np.random.default_rng(0)
    files = []
    for k, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        score = rng.random(n)
        table = pa.table({"source_key": pa.array([str(10_000_000 + start + i) for i in range(n)]), "score": score,
                          "label": pa.array((score >= 0.5).astype(np.int8)),
                          "predicted_class": pa.array(np.where(score >= 0.5, "1", "0")),
                          "probabilities": pa.nulls(n, pa.string())})
        files.append(str(folder / f"chunk-{k:05d}.parquet"))
        pq.write_table(table, files[-1], compression="lz4")
    return files


def one(folder: Path, files: list[str], expected: list[str], threads: int | None) -> dict:
    """One publish of the day into a fresh file holding another day; figures per step."""
    path = folder / f"results-{threads or 'default'}.duckdb"
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(str(path), config={"autoinstall_known_extensions": False,
                                            "autoload_known_extensions": False})
    con.execute(TABLE)
    con.execute("INSERT INTO predictions SELECT 'x' || i, 0.5, 1, '1', NULL, 'm', 1, 'r', DATE '2026-06-01', now() "
                "FROM range(300000) t(i)")
    con.execute("CHECKPOINT")
    con.execute("SET memory_limit = '256MiB'")
    if threads:
        con.execute(f"SET threads = {threads}")
    out = {}
    cpu, wall = time.process_time(), time.perf_counter()
    con.execute("BEGIN")
    con.execute("DELETE FROM predictions WHERE day = $1", [DAY])
    con.execute(INSERT, [DAY, files])
    con.execute("COMMIT")
    out["insert_cpu"], out["insert_wall"] = time.process_time() - cpu, time.perf_counter() - wall
    cpu, wall = time.process_time(), time.perf_counter()
    con.execute("CHECKPOINT")
    out["checkpoint_cpu"], out["checkpoint_wall"] = time.process_time() - cpu, time.perf_counter() - wall
    got = [r[0] for r in con.execute("SELECT source_key FROM predictions WHERE day = $1", [DAY]).fetchall()]
    out["order_kept"] = got == expected
    con.close()
    out["file_mb"] = path.stat().st_size / 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk", type=int, default=125_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", default="", help="a folder for the staged files and databases (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-insert-") as scratch:
        folder = Path(args.data or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        files = stage(folder, args.rows, args.chunk)
        expected = pa.concat_tables([pq.read_table(f, columns=["source_key"]) for f in files]).column(0).to_pylist()
        contenders = {"default threads": None, "one thread": 1}
        rounds: dict[str, list[dict]] = {k: [] for k in contenders}
        for _ in range(args.repeat):
            for name, threads in contenders.items():
                rounds[name].append(one(folder, files, expected, threads))
        print(f"duckdb {duckdb.__version__}, {args.rows:,} rows in {len(files)} staged files, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}; medians of {args.repeat}")
        med = {k: {m: statistics.median(r[m] for r in v) for m in v[0] if m != "order_kept"}
               for k, v in rounds.items()}
        for name, m in med.items():
            kept = all(r["order_kept"] for r in rounds[name])
            print(f"{name:<16} insert {m['insert_cpu']:6.2f} CPU s {m['insert_wall']:6.2f} s   checkpoint "
                  f"{m['checkpoint_cpu']:6.2f} CPU s {m['checkpoint_wall']:6.2f} s   file {m['file_mb']:6.1f} MB   "
                  f"order kept: {kept}")
        total = {k: m["insert_cpu"] + m["checkpoint_cpu"] for k, m in med.items()}
        walls = {k: m["insert_wall"] + m["checkpoint_wall"] for k, m in med.items()}
        print(f"one thread / default, insert + checkpoint: CPU {total['one thread'] / total['default threads']:.3f}, "
              f"wall {walls['one thread'] / walls['default threads']:.3f}")


if __name__ == "__main__":
    main()
