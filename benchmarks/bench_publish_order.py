"""The PostgreSQL publish's COPY of predictions whose keys arrive in random order: rows sent as staged vs each
staged chunk file sorted by ``source_key`` (what ``postgres_store._file_batches(..., sort_by="source_key")``
does), into a table with the predictions' primary key, a new day each time, side by side.

    flock /work/wt/bench.lock .venv/bin/python benchmarks/bench_publish_order.py [--rows 1000000] [--files 8]
        [--repeat 3] [--url postgresql://postgres@127.0.0.1:5432/test]

Keys are random uuids; each file holds one key range (as a chunk does) in random (source) order. Prints the
medians; the throwaway schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.storage.results.postgres_store import TYPES, _chain, _file_batches, arrow_schema  # noqa: E402
from scoring.storage.results.tables import predictions_spec  # noqa: E402

DEFAULT_URL = os.environ.get("SCORING_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=DEFAULT_URL)
    args = parser.parse_args()
    import adbc_driver_postgresql.dbapi as pg

    rng = np.random.default_rng(1)
    keys = np.sort(np.array([str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**63, args.rows)]))
    spec = predictions_spec("predictions")
    schema_name = f"bench_order_{uuid.uuid4().hex[:8]}"
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    con = pg.connect(args.url)
    cur = con.cursor()
    cur.execute(f'CREATE SCHEMA "{schema_name}"')
    cols = ", ".join(f"{c.name} {TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in spec.columns)
    cur.execute(f'CREATE TABLE "{schema_name}".predictions ({cols}, PRIMARY KEY (day, model_name, source_key))')
    con.commit()
    timings: dict[str, list[float]] = {"as staged": [], "sorted per file": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_order_") as tmp:
            files = []
            for i, part in enumerate(np.array_split(keys, args.files)):
                part = part.copy()
                rng.shuffle(part)
                path = Path(tmp) / f"chunk-{i:05d}.parquet"
                pq.write_table(pa.table({"source_key": pa.array(part), "score": pa.array(rng.random(len(part))),
                                         "label": pa.array(np.ones(len(part), np.int16))}), path)
                files.append(path)
            day = dt.date(2026, 1, 1)
            for _ in range(args.repeat):
                for how, sort_by in (("as staged", None), ("sorted per file", "source_key")):
                    day += dt.timedelta(days=1)
                    constants = {"model_name": "m", "model_version": 1, "run_id": "bench", "day": day,
                                 "scored_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}
                    started = time.perf_counter()
                    batches = _file_batches(files, arrow_schema(spec), constants, sort_by)
                    first = next(batches)
                    cur.adbc_ingest("predictions", pa.RecordBatchReader.from_batches(first.schema, _chain(first, batches)),
                                    mode="append", db_schema_name=schema_name)
                    con.commit()
                    timings[how].append(time.perf_counter() - started)
    finally:
        con.rollback()
        cur.execute(f'DROP SCHEMA "{schema_name}" CASCADE')
        con.commit()
        cur.close()
        con.close()
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"{args.rows:,} rows in {args.files} files, random keys, medians of {args.repeat}; load average "
          f"{os.getloadavg()[0]:.2f}")
    for how, value in med.items():
        print(f"  {how:18}{value:>8.2f} s")
    print(f"  sorted / as staged {med['sorted per file'] / med['as staged']:.2f}")


if __name__ == "__main__":
    main()
