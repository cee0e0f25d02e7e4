"""`scoring stream` as real processes on a real Redis (own key prefix, deleted afterwards): exact scores in
``stream_predictions``, dead letters with reasons, and a consumer SIGKILLed mid-batch losing and duplicating
nothing once another consumer reclaims its entries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.online.helpers import json_rows, mixed_frame, own_scores, setup_model

pytestmark = pytest.mark.timeout(600)
REDIS_URL = os.environ.get("SCORING_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture()
def redis_prefix():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    prefix = f"test:{uuid.uuid4().hex[:10]}"
    yield client, prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def consumer(cfg: Path, prefix: str, name: str, sink: str, *args: str, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "scoring.cli", "stream", "-c", str(cfg), "--redis-url", REDIS_URL,
           "--stream", f"{prefix}:events", "--group", "g", "--consumer", name, "--sink", sink,
           "--batch-size", "50", "--max-wait-ms", "20", "--claim-idle-ms", "300", "--idle-exit-s", "3",
           "--reload-s", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cfg.parent,
                          env={**os.environ, **(env or {})})


def publish(client, prefix: str, payloads: list[bytes]) -> list[str]:
    pipe = client.pipeline()
    for p in payloads:
        pipe.xadd(f"{prefix}:events", {"data": p})
    return [i.decode() for i in pipe.execute()]


def committed(sink_target: str, schema: str = "scoring_online") -> list[dict]:
    from scoring.online.sinks import Sink

    return Sink(sink_target, schema).read("stream_predictions")


def test_consumer_scores_events_exactly_and_dead_letters_bad_ones(tmp_path: Path, redis_prefix) -> None:
    client, prefix = redis_prefix
    frame = mixed_frame(200)
    cfg, model = setup_model(tmp_path, frame)
    rows = json_rows(frame)
    good_ids = publish(client, prefix, [json.dumps(r).encode() for r in rows])
    bad = [b"{not json", json.dumps([1, 2]).encode(), json.dumps({**rows[0], "code": 7}).encode(),
           json.dumps({**rows[0], "region": "central"}).encode(),
           json.dumps({k: v for k, v in rows[0].items() if k != "flag"}).encode()]
    bad_ids = publish(client, prefix, bad)
    sink = str(tmp_path / "online.duckdb")
    res = consumer(cfg, prefix, "c1", sink, "--output", f"{prefix}:scores")
    assert res.returncode == 0, res.stderr[-2000:]
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    assert counts["scored"] + counts["dead"] == len(rows) + len(bad)  # every event accounted for
    out = {r["event_id"]: r for r in committed(sink)}
    assert sorted(out) == sorted(good_ids)
    scores = np.array([out[i]["score"] for i in good_ids])
    assert np.abs(scores - own_scores(model, frame)).max() <= 1e-12
    assert {r["model_version"] for r in out.values()} == {1}
    dead = client.xrange(f"{prefix}:events:dead")
    reasons = {f[b"event_id"].decode(): f[b"reason"].decode() for _, f in dead}
    assert sorted(reasons) == sorted(bad_ids)
    assert "not JSON" in reasons[bad_ids[0]] and "JSON object" in reasons[bad_ids[1]]
    assert "'code'" in reasons[bad_ids[2]] and "7" in reasons[bad_ids[2]]
    assert "region" in reasons[bad_ids[3]] and "central" in reasons[bad_ids[3]]
    assert "'flag'" in reasons[bad_ids[4]] and "missing" in reasons[bad_ids[4]]
    assert client.xpending(f"{prefix}:events", "g")["pending"] == 0
    assert client.xlen(f"{prefix}:scores") == len(rows)
    # a second pass over the same events (a replayed stream) inserts nothing twice
    client.xgroup_setid(f"{prefix}:events", "g", id="0")
    assert consumer(cfg, prefix, "c2", sink).returncode == 0
    assert len(committed(sink)) == len(rows)
    # parity of the stream's rows with the batch path
    from scoring.config import load_config
    from scoring.online.parity import replay
    from scoring.online.sinks import Sink

    report = replay(load_config(cfg), Sink(sink), None)
    assert report.rows == len(rows) and report.differences == [] and report.max_abs_diff <= 1e-12
    cli = [sys.executable, "-m", "scoring.cli", "parity", "-c", str(cfg), "--log-to", sink]
    res = subprocess.run([*cli, "--since", "2000-01-01"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[0])["differences"] == 0
    res = subprocess.run([*cli, "--since", "last week"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and "--since 'last week'" in res.stderr and "Traceback" not in res.stderr


def test_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    cfg, _ = setup_model(tmp_path, mixed_frame(80))
    res = subprocess.run([sys.executable, "-m", "scoring.cli", "stream", "-c", str(cfg), "--redis-url",
                          "redis://127.0.0.1:1/0", "--sink", str(tmp_path / "o.duckdb")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("fault", ["stream_before_commit", "stream_before_ack"])
def test_consumer_killed_mid_batch_loses_and_duplicates_nothing(fault: str, tmp_path: Path, redis_prefix,
                                                                pg_url: str, pg_schema: str) -> None:
    client, prefix = redis_prefix
    frame = mixed_frame(240)
    cfg, model = setup_model(tmp_path, frame)
    rows = json_rows(frame)
    ids = publish(client, prefix, [json.dumps(r).encode() for r in rows])
    first = consumer(cfg, prefix, "a", pg_url, "--sink-schema", pg_schema, env={"SCORING_FAULT": fault})
    assert first.returncode == -9, first.stderr[-2000:]  # SIGKILLed inside its first batch
    pending = client.xpending(f"{prefix}:events", "g")
    assert pending["pending"] == 50 and {c["name"] for c in pending["consumers"]} == {b"a"}
    assert len(committed(pg_url, pg_schema)) == (50 if fault == "stream_before_ack" else 0)
    second = consumer(cfg, prefix, "b", pg_url, "--sink-schema", pg_schema)
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout.strip().splitlines()[-1])["reclaimed"] == 50
    out = committed(pg_url, pg_schema)
    assert len(out) == len(rows)  # nothing duplicated (primary key event id + version) ...
    assert sorted(r["event_id"] for r in out) == sorted(ids)  # ... and nothing lost
    by_id = {r["event_id"]: r["score"] for r in out}
    assert np.abs(np.array([by_id[i] for i in ids]) - own_scores(model, frame)).max() <= 1e-12
    assert client.xpending(f"{prefix}:events", "g")["pending"] == 0


def test_promotion_between_micro_batches_each_row_names_its_version(tmp_path: Path, redis_prefix) -> None:
    import redis

    from scoring.config import load_config
    from scoring.online.loaded import ModelSlot
    from scoring.online.sinks import Sink
    from scoring.online.stream import Consumer, StreamSettings
    from tests.online.helpers import fit

    client, prefix = redis_prefix
    frame = mixed_frame(100)
    cfg, v1 = setup_model(tmp_path, frame)
    ids = publish(client, prefix, [json.dumps(r).encode() for r in json_rows(frame)])
    slot = ModelSlot(load_config(cfg))
    slot.load()
    sink = Sink(str(tmp_path / "o.duckdb"))
    settings = StreamSettings(f"{prefix}:events", "g", "c", batch_size=20, max_wait_ms=0)
    consumer = Consumer(redis.Redis.from_url(REDIS_URL), slot, sink, settings, reload_s=0)
    assert consumer.run(max_events=40)["scored"] == 40
    setup_model(tmp_path, frame, c=0.02)  # v2, champion
    assert slot.refresh() and slot.current.version == 2
    assert consumer.run(idle_exit_s=1)["scored"] == 100
    rows = {r["event_id"]: r for r in sink.read("stream_predictions")}
    assert sorted(rows) == sorted(ids)
    own = {1: own_scores(v1, frame), 2: own_scores(fit(frame, c=0.02), frame)}
    versions = [rows[i]["model_version"] for i in ids]
    assert versions == [1] * 40 + [2] * 60
    for k, event_id in enumerate(ids):
        assert abs(rows[event_id]["score"] - own[versions[k]][k]) <= 1e-12
    # the daily ledger: one row per version the consumer served today, counts as committed
    daily = {r["model_version"]: r for r in sink.read_daily()}
    assert sorted(daily) == [1, 2] and {r["service"] for r in daily.values()} == {"c"}
    assert (daily[1]["scored"], daily[2]["scored"]) == (40, 60)
    assert all(r["received"] == r["scored"] and r["kind"] == "stream" for r in daily.values())


def test_a_poison_event_is_dead_lettered_after_max_deliveries(tmp_path: Path, redis_prefix) -> None:
    """An event that kills every consumer handling it (fault point ``stream_event_<id>``: SIGKILL) is
    delivered at most --max-deliveries times, then dead-lettered with the reason; its batch-mates are scored
    (exactly, by the model's own output), nothing stays pending, and the daily ledger row accounts for every
    event: received = scored + invalid + rejected."""
    client, prefix = redis_prefix
    frame = mixed_frame(80)
    cfg, model = setup_model(tmp_path, frame)
    ids = publish(client, prefix, [json.dumps(r).encode() for r in json_rows(frame)])
    poison = ids[7]
    sink = str(tmp_path / "online.duckdb")
    kill = {"SCORING_FAULT": f"stream_event_{poison}"}
    for name in ("a", "b"):  # a: dies in its first batch; b: reclaims it entry by entry, dies on the poison
        res = consumer(cfg, prefix, name, sink, "--max-deliveries", "2", env=kill)
        assert res.returncode == -9, res.stderr[-2000:]
    assert int(client.xpending_range(f"{prefix}:events", "g", min=poison, max=poison, count=1)[0]
               ["times_delivered"]) == 2
    res = consumer(cfg, prefix, "c", sink, "--max-deliveries", "2", env=kill)  # the third delivery: not handled
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["poison"] == 1
    dead = client.xrange(f"{prefix}:events:dead")
    assert [f[b"event_id"].decode() for _, f in dead] == [poison]
    assert "delivered 3 times without being committed (max_deliveries 2)" in dead[0][1][b"reason"].decode()
    assert client.xpending(f"{prefix}:events", "g")["pending"] == 0
    out = {r["event_id"]: r["score"] for r in committed(sink)}
    assert sorted(out) == sorted(i for i in ids if i != poison)  # the batch-mates: scored once each
    own = own_scores(model, frame)
    assert max(abs(out[i] - own[k]) for k, i in enumerate(ids) if i != poison) <= 1e-12
    from scoring.online.sinks import Sink

    daily = Sink(sink).read_daily()
    assert sum(r["received"] for r in daily) == sum(r["scored"] + r["invalid"] + r["rejected"] for r in daily)
    assert sum(r["scored"] for r in daily) == len(ids) - 1 and sum(r["invalid"] for r in daily) == 1
    assert {r["service"] for r in daily} <= {"a", "b", "c"}
