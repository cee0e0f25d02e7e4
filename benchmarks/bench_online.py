"""Online and streaming benchmark: `scoring serve` vs a naive per-request endpoint, and `scoring stream`.

HTTP: the same model (the mixed-type Pipeline of tests/online/helpers.py: imputer + one-hot + logistic
regression, trained here) behind two servers, each one uvicorn process on a free loopback port:

    naive     benchmarks/naive_peer.py: Starlette, ``predict_proba(pd.DataFrame([row]))`` per request
    serve     scoring serve (signature check, per-row gate, contract conversion, adaptive micro-batching;
              max_batch_size 64, max_wait_ms 0)

A load generator in this process (a raw asyncio HTTP/1.1 client, keep-alive connections) sends single-row requests from
``concurrency`` clients in a closed loop for ``--seconds`` per level; throughput is answered requests per
second, p50/p99 the latency of each request as the client saw it. Levels run interleaved (naive, serve per
level). The scores both servers return are checked against the model's own output first.

Stream: ``--events`` events are pushed to a Redis stream (own key prefix, deleted afterwards) and one
`scoring stream` process drains them into `stream_predictions` (PostgreSQL, a throwaway schema dropped
afterwards; ``--pg-url ''`` for a DuckDB file): events/s over the drain (first to last commit).
Then a producer adds events at half that rate for ``--stream-seconds`` while a consumer runs: end-to-end
lag (commit time minus the event's stream id time) p50 and p99.

    .venv/bin/python benchmarks/bench_online.py [--seconds 8] [--events 20000] [--stream-seconds 60]

Targets (issue 29): serve p50 within 1.5x of naive at concurrency 1; at concurrency 64, at least 5x the
naive throughput at a p99 no worse than the naive one's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.online.helpers import Server, free_port, json_rows, mixed_frame, own_scores, setup_model  # noqa: E402

LEVELS = (1, 16, 64)


def clean_rows(frame: Any) -> list[dict[str, Any]]:
    """Rows without missing values: the naive endpoint's DataFrame([row]) cannot type a null."""
    return [r for r in json_rows(frame) if all(v is not None for v in r.values())]


def start_naive(artifact: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "naive_peer.py"), str(artifact), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("naive peer not ready")


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes) -> int:
    """One HTTP/1.1 keep-alive POST on an open connection; returns the status code (body read and dropped)."""
    writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    await writer.drain()
    header = await reader.readuntil(b"\r\n\r\n")
    status = int(header[9:12])
    length = 0
    for line in header.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _load(url: str, path: str, rows: list[dict[str, Any]], concurrency: int, seconds: float) -> dict[str, float]:
    """Closed-loop load: ``concurrency`` keep-alive connections, each sending its next request when answered.

    A raw asyncio HTTP/1.1 client (a few lines) rather than httpx: httpx's connection pool itself serves
    only ~50 trivial requests/s at 64 connections on this loaded machine, which would measure the client.
    """
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: ").encode()
    bodies = [json.dumps({"row": r}).encode() for r in rows]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        i = k
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                if await _request(reader, writer, head, bodies[i % len(bodies)]) != 200:
                    errors += 1
                latencies.append(time.perf_counter() - started)
                i += concurrency
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    wall = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {"rps": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "requests": len(latencies), "errors": errors}


def check_outputs(naive: str, serve: str, rows: list[dict[str, Any]], expected: np.ndarray) -> float:
    import httpx

    worst = 0.0
    for row, want in zip(rows[:50], expected[:50], strict=True):
        a = httpx.post(naive + "/predict", json={"row": row}, timeout=30).json()["score"]
        b = httpx.post(serve + "/v1/score", json={"row": row}, timeout=30).json()["predictions"][0]["score"]
        worst = max(worst, abs(a - want), abs(b - want))
    return worst


def bench_http(folder: Path, seconds: float) -> dict[int, dict[str, dict[str, float]]]:
    frame = mixed_frame(2000)
    cfg, model = setup_model(folder, frame)
    artifact = folder / "model_c1.0.joblib"
    keep = [i for i, r in enumerate(json_rows(frame)) if all(v is not None for v in r.values())]
    rows = [json_rows(frame)[i] for i in keep]
    expected = own_scores(model, frame)[keep]
    naive_proc, naive_url = start_naive(artifact)
    server = Server(cfg, "--max-batch-size", "64", "--max-wait-ms", "0")
    try:
        server.wait_ready()
        worst = check_outputs(naive_url, server.url, rows, expected)
        print(f"outputs checked: max |score - model's own| over 50 rows, both servers: {worst:.1e}")
        out: dict[int, dict[str, dict[str, float]]] = {}
        for level in LEVELS:
            asyncio.run(_load(naive_url, "/predict", rows, level, 1.0))  # warm-up
            asyncio.run(_load(server.url, "/v1/score", rows, level, 1.0))
            out[level] = {"naive": asyncio.run(_load(naive_url, "/predict", rows, level, seconds)),
                          "serve": asyncio.run(_load(server.url, "/v1/score", rows, level, seconds))}
        return out
    finally:
        server.stop()
        os.kill(naive_proc.pid, signal.SIGTERM)
        naive_proc.wait(30)


def _consumer(cfg: Path, stream: str, sink: str, schema: str, idle_exit_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scoring.cli", "stream", "-c", str(cfg), "--stream", stream,
                             "--group", "bench", "--consumer", "c1", "--sink", sink, "--sink-schema", schema,
                             "--batch-size", "256",
                             "--max-wait-ms", "20", "--idle-exit-s", str(idle_exit_s), "--reload-s", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cfg.parent, text=True)


def bench_stream(folder: Path, events: int, stream_seconds: float, pg_url: str | None) -> dict[str, float]:
    import redis

    from scoring.online.sinks import Sink

    frame = mixed_frame(2000)
    cfg, _ = setup_model(folder, frame)
    payloads = [json.dumps(r).encode() for r in json_rows(frame)]
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        stream = f"{prefix}:drain"
        pipe = client.pipeline()
        for i in range(events):
            pipe.xadd(stream, {"data": payloads[i % len(payloads)]})
        pipe.execute()
        sink = pg_url or str(folder / "drain.duckdb")
        proc = _consumer(cfg, stream, sink, schema + "_drain", 3)
        _out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(err[-2000:])
        done = Sink(sink, schema + "_drain").read("stream_predictions")
        stamps = sorted(r["scored_at"] for r in done)
        drain_eps = len(done) / max((stamps[-1] - stamps[0]).total_seconds(), 1e-9)

        rate = max(50.0, drain_eps / 2)
        stream = f"{prefix}:steady"
        client.xgroup_create(stream, "bench", id="0", mkstream=True)
        sink = pg_url or str(folder / "steady.duckdb")
        proc = _consumer(cfg, stream, sink, schema + "_steady", 5)
        time.sleep(3)  # the consumer starts (imports, model load) before the clock runs

        def produce() -> None:
            started, sent = time.perf_counter(), 0
            while (elapsed := time.perf_counter() - started) < stream_seconds:
                due = int(elapsed * rate) - sent
                if due > 0:
                    p = client.pipeline()
                    for i in range(due):
                        p.xadd(stream, {"data": payloads[(sent + i) % len(payloads)]})
                    p.execute()
                    sent += due
                time.sleep(0.005)

        producer = threading.Thread(target=produce)
        producer.start()
        producer.join()
        _out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(err[-2000:])
        rows = Sink(sink, schema + "_steady").read("stream_predictions")
        lag = np.array([(r["scored_at"] - r["event_at"]).total_seconds() for r in rows]) * 1000
        return {"events": events, "drain_events_per_s": drain_eps, "steady_rate": rate,
                "steady_events": len(rows), "steady_seconds": stream_seconds,
                "lag_p50_ms": float(np.percentile(lag, 50)), "lag_p99_ms": float(np.percentile(lag, 99)),
                "duplicates": len(rows) - len({r["event_id"] for r in rows})}
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()
        if pg_url:
            import psycopg

            with psycopg.connect(pg_url, autocommit=True) as con:
                for suffix in ("_drain", "_steady"):
                    con.execute(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of load per level and server")
    parser.add_argument("--events", type=int, default=20_000, help="events drained by the stream consumer")
    parser.add_argument("--stream-seconds", type=float, default=60.0, help="seconds of steady production")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="stream_predictions in a throwaway schema there ('' for a DuckDB file)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load1 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        http = bench_http(Path(tmp) / "http", args.seconds) if (Path(tmp) / "http").mkdir() is None else {}
        print(f"\nHTTP, single-row requests, {args.seconds:.0f} s per level (load average at start {load1:.1f} "
              f"on {os.cpu_count()} cores)")
        print(f"{'conc':>4} | {'naive rps':>9} {'p50 ms':>7} {'p99 ms':>7} | {'serve rps':>9} {'p50 ms':>7} "
              f"{'p99 ms':>7} | {'rps x':>5} {'p50 x':>5} {'p99 x':>5}")
        for level, r in http.items():
            n, s = r["naive"], r["serve"]
            print(f"{level:>4} | {n['rps']:>9.0f} {n['p50_ms']:>7.2f} {n['p99_ms']:>7.2f} | {s['rps']:>9.0f} "
                  f"{s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} | {s['rps'] / n['rps']:>5.2f} "
                  f"{s['p50_ms'] / n['p50_ms']:>5.2f} {s['p99_ms'] / n['p99_ms']:>5.2f}"
                  + (f"  errors naive {n['errors']} serve {s['errors']}" if n["errors"] or s["errors"] else ""))
        if not args.skip_stream:
            (Path(tmp) / "stream").mkdir()
            st = bench_stream(Path(tmp) / "stream", args.events, args.stream_seconds, args.pg_url or None)
            print(f"\nstream ({'PostgreSQL' if args.pg_url else 'DuckDB'} sink, batch 256): drain of {st['events']} events: {st['drain_events_per_s']:.0f} events/s; steady "
                  f"{st['steady_rate']:.0f} events/s for {st['steady_seconds']:.0f} s ({st['steady_events']} events): "
                  f"lag p50 {st['lag_p50_ms']:.0f} ms, p99 {st['lag_p99_ms']:.0f} ms; duplicates {st['duplicates']}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    _ = statistics  # medians are per-request percentiles above


if __name__ == "__main__":
    main()
