"""``scoring stream``: score the events of a Redis stream in micro-batches, at least once, idempotently.

Each event is a stream entry whose field ``data`` holds one JSON row (the same row the HTTP service takes).
The consumer is one member of a consumer group (``XREADGROUP``):

1. it first reclaims entries another consumer of the group read but never acknowledged for longer than
   ``claim_idle_ms`` (``XAUTOCLAIM``: that consumer died or hung), one at a time, each its own micro-batch
   (so an entry that kills whoever handles it takes no batch-mates down with it); an entry already
   delivered more than ``max_deliveries`` times (Redis counts each delivery: ``XPENDING``) is not handled
   again but dead-lettered with that reason (the ``max_deliver`` of NATS JetStream); then it reads new
   ones, up to ``batch_size`` entries, waiting at most ``max_wait_ms`` for the batch to fill;
2. an entry that is not a JSON object or does not fit the signature, and a row a per-row rule of the suite
   rejects, goes to the dead-letter stream with the reason (``XADD <stream>:dead``);
3. the rest are scored in one call of the batch path's ``gate_and_score`` (``scoring.online.batching``)
   by the version in service, and committed to ``stream_predictions`` in one transaction, with
   primary key (event id, model version) and ``ON CONFLICT DO NOTHING``;
4. only then are the entries acknowledged (``XACK``), and the scores optionally added to an output stream.

A crash between 3 and 4 leaves the entries pending; whoever reclaims them scores them again and the insert
keeps the first rows (same event, same version: the same score), so nothing is lost or duplicated in the
table. The dead-letter and output streams are at-least-once: a crash between their XADD and the XACK repeats
an entry there (its ``event_id`` field tells). The crash tests SIGKILL a consumer at the fault points
``stream_before_commit``, ``stream_before_ack`` and ``stream_event_<id>`` (while handling that entry: a
poison message; ``scoring.storage.faults``).

Each micro-batch also adds its counts to the consumer's ``online_daily`` row (kind ``stream``, service =
the consumer's name; business day in ``schedule.timezone``) in the transaction that commits its
predictions; ``scored`` counts the rows that transaction inserted, so a redelivered batch is not counted
twice there (its dead letters, like the dead-letter stream, may be).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from scoring.errors import SourceError
from scoring.online import metrics
from scoring.online.batching import score_micro_batch
from scoring.online.loaded import Loaded, ModelSlot
from scoring.online.rows import ROW_COLUMN, RowError, to_table
from scoring.online.sinks import Sink, utcnow
from scoring.storage.faults import fault_point
from scoring.storage.pgconn import redact_url

logger = logging.getLogger(__name__)

FIELD = b"data"


@dataclass(frozen=True)
class StreamSettings:
    """Names and batching of one consumer.

    Attributes:
        stream: the input stream key (prefix it per deployment: ``acme:loans:events``).
        group: the consumer group (created at the stream's start if missing).
        consumer: this consumer's name, unique in the group (host:pid by default).
        batch_size: entries per micro-batch at most.
        max_wait_ms: how long a micro-batch waits to fill after its first entry.
        claim_idle_ms: reclaim entries pending for longer than this on another consumer.
        dead_letter: the dead-letter stream (default ``<stream>:dead``).
        output: a stream to add each score to after it is committed (None: none).
        max_deliveries: an entry delivered more times than this (the consumers handling it died or failed
            each time) goes to the dead-letter stream instead of being handled again.
    """

    stream: str
    group: str = "scoring"
    consumer: str = "consumer-1"
    batch_size: int = 256
    max_wait_ms: float = 50.0
    claim_idle_ms: int = 30_000
    dead_letter: str | None = None
    output: str | None = None
    max_deliveries: int = 5

    @property
    def dead(self) -> str:
        return self.dead_letter or f"{self.stream}:dead"


def event_seconds(event_id: str) -> float:
    """The time a Redis stream id was assigned (its millisecond part), in epoch seconds."""
    return int(event_id.split("-", 1)[0]) / 1000.0


class Consumer:
    """One consumer of the group (see the module docstring)."""

    def __init__(self, redis: Any, slot: ModelSlot, sink: Sink, settings: StreamSettings,
                 reload_s: float = 5.0) -> None:
        self.redis, self.slot, self.sink, self.s = redis, slot, sink, settings
        self.reload_s = reload_s
        self.stop = threading.Event()
        self._claim_from = "0-0"
        self._last_reload = time.monotonic()
        self.counts = {"scored": 0, "dead": 0, "reclaimed": 0, "batches": 0, "poison": 0}

    def ensure_group(self) -> None:
        """Create the consumer group at the start of the stream (and the stream) unless it exists."""
        import redis

        try:
            self.redis.xgroup_create(self.s.stream, self.s.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _reclaim(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """One entry pending on a silent consumer for ``claim_idle_ms`` (none: []), claimed by this one (its
        delivery count goes up by one); entries delivered more than ``max_deliveries`` times are
        dead-lettered and acknowledged on the way."""
        scans = 0
        while True:
            # COUNT 1 claims one entry but scans up to 10 of the pending list per call: keep scanning (from
            # the cursor) past live consumers' fresh entries, up to a whole pending list of ~10 batches.
            reply = self.redis.xautoclaim(self.s.stream, self.s.group, self.s.consumer, self.s.claim_idle_ms,
                                          start_id=self._claim_from, count=1)
            next_id, claimed = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            self._claim_from = next_id.decode() if isinstance(next_id, bytes) else str(next_id)
            if deleted:  # trimmed from the stream while pending: nothing left to score
                self.redis.xack(self.s.stream, self.s.group, *deleted)
            entries = [(i, f) for i, f in claimed if f is not None]
            scans += 1
            if not entries:
                if self._claim_from != "0-0" and scans < self.s.batch_size:
                    continue
                return []
            entry_id, fields = entries[0]
            delivered = self._deliveries(entry_id)
            if delivered <= self.s.max_deliveries:
                self.counts["reclaimed"] += 1
                logger.warning("reclaimed entry %s of a silent consumer (delivery %s of at most %s)",
                               _text(entry_id), delivered, self.s.max_deliveries)
                return entries
            self._dead_letter_poison(entry_id, fields, delivered)

    def _deliveries(self, entry_id: bytes | str) -> int:
        """How many times the group delivered the entry (``XPENDING``'s counter, this claim included)."""
        found = self.redis.xpending_range(self.s.stream, self.s.group, min=entry_id, max=entry_id, count=1)
        return int(found[0]["times_delivered"]) if found else 0

    def _dead_letter_poison(self, entry_id: bytes | str, fields: dict[bytes, bytes], delivered: int) -> None:
        event_id = _text(entry_id)
        reason = (f"delivered {delivered} times without being committed (max_deliveries {self.s.max_deliveries}): "
                  "the consumers handling it died or failed each time")
        loaded = self.slot.current
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.s.dead, {"event_id": event_id, "reason": reason, "data": fields.get(FIELD, b""),
                                "model_version": str(loaded.version if loaded else "")})
        pipe.xack(self.s.stream, self.s.group, entry_id)
        pipe.execute()
        self.counts["dead"] += 1
        self.counts["poison"] += 1
        metrics.ERRORS.labels("dead_letter").inc()
        if loaded is not None:
            self._count_daily(loaded, received=1, invalid=1)
        logger.error("event %s dead-lettered: %s", event_id, reason)

    def _read(self, want: int, block_ms: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply = self.redis.xreadgroup(self.s.group, self.s.consumer, {self.s.stream: ">"}, count=want,
                                      block=block_ms)
        return [e for _stream, entries in (reply or []) for e in entries]

    def next_batch(self, block_ms: int = 1000) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """A reclaimed entry alone (see ``_reclaim``), else new ones: up to ``batch_size``, filled for up to
        ``max_wait_ms``."""
        entries = self._reclaim()
        if entries:
            return entries
        entries = self._read(self.s.batch_size, block_ms)
        deadline = time.monotonic() + self.s.max_wait_ms / 1000.0
        while entries and len(entries) < self.s.batch_size and (left := deadline - time.monotonic()) > 0:
            more = self._read(self.s.batch_size - len(entries), max(1, int(left * 1000)))
            if not more:
                break
            entries += more
        return entries

    def handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Score, commit, dead-letter and acknowledge one micro-batch of entries."""
        if not entries:
            return
        loaded = self.slot.current
        if loaded is None:
            raise RuntimeError("no model loaded")
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i, _ in entries]
        dead: list[tuple[str, str, bytes]] = []
        good: list[tuple[str, Any, bytes]] = []
        for event_id, (_, fields) in zip(ids, entries, strict=True):
            fault_point(f"stream_event_{event_id}")
            raw = fields.get(FIELD, b"")
            try:
                row = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                dead.append((event_id, "the data field is not JSON", raw))
                continue
            if not isinstance(row, dict):
                dead.append((event_id, "the data field is not a JSON object", raw))
                continue
            good.append((event_id, row, raw))
        table, good = self._typed(loaded, good, dead)
        rejected = 0
        rows_out: list[tuple[Any, ...]] = []
        scored_ids: list[str] = []
        if good:
            results = score_micro_batch(loaded, table)
            now = utcnow()
            for (event_id, _row, raw), result in zip(good, results, strict=True):
                if "rejected" in result:
                    rejected += 1
                    r = result["rejected"]
                    dead.append((event_id, f"rule {r['rule']} on column {r['column']!r}, value {r['value']!r}"
                                 + (f": {r['reason']}" if r.get("reason") else ""), raw))
                    continue
                probs = result.get("probabilities")
                rows_out.append((event_id, loaded.name, loaded.version, result["score"], result["label"],
                                 result["predicted_class"], json.dumps(probs) if probs else None,
                                 raw.decode() if isinstance(raw, bytes) else str(raw),
                                 _event_at(event_id), now))
                scored_ids.append(event_id)
        fault_point("stream_before_commit")
        invalid = len(dead) - rejected
        now_local = self._today()
        # committed with the day's counts before anything is acknowledged
        self.sink.write_batch(rows_out, [self._daily_row(loaded, now_local, received=len(entries),
                                                         scored=len(rows_out), rejected=rejected,
                                                         invalid=invalid)])
        fault_point("stream_before_ack")
        pipe = self.redis.pipeline(transaction=False)
        for event_id, reason, raw in dead:
            pipe.xadd(self.s.dead, {"event_id": event_id, "reason": reason, "data": raw,
                                    "model_version": str(loaded.version)})
        if self.s.output:
            for row in rows_out:
                pipe.xadd(self.s.output, {"event_id": row[0], "score": repr(row[3]),
                                          "model_version": str(loaded.version)})
        pipe.xack(self.s.stream, self.s.group, *ids)
        pipe.execute()
        done = time.time()
        for event_id in scored_ids:
            metrics.STREAM_LAG.observe(max(0.0, done - event_seconds(event_id)))
        metrics.BATCH_ROWS.labels("stream").observe(len(entries))
        metrics.ROWS.labels("stream", str(loaded.version)).inc(len(scored_ids))
        if dead:
            metrics.ERRORS.labels("dead_letter").inc(len(dead))
        self.counts["scored"] += len(scored_ids)
        self.counts["dead"] += len(dead)
        self.counts["batches"] += 1

    def _today(self) -> Any:
        import datetime as dt

        from scoring.dates import zone_info

        return dt.datetime.now(zone_info(self.slot.cfg.timezone)).date()

    def _daily_row(self, loaded: Loaded, day: Any, **counts: int) -> dict[str, Any]:
        now = utcnow()
        return {"day": day, "kind": "stream", "service": self.s.consumer, "model_name": loaded.name,
                "model_version": loaded.version, "received": 0, "scored": 0, "rejected": 0, "invalid": 0,
                **counts, "first_at": now, "last_at": now}

    def _count_daily(self, loaded: Loaded, **counts: int) -> None:
        self.sink.add_daily([self._daily_row(loaded, self._today(), **counts)])

    def _typed(self, loaded: Loaded, good: list[tuple[str, Any, bytes]],
               dead: list[tuple[str, str, bytes]]) -> tuple[pa.Table | None, list[tuple[str, Any, bytes]]]:
        """The Arrow table of the valid rows; rows that do not fit the signature go to ``dead``."""
        while good:
            try:
                table = to_table([row for _, row, _ in good], loaded.features)
            except RowError as exc:
                event_id, _row, raw = good.pop(exc.row)
                dead.append((event_id, str(RowError(0, exc.field, exc.value, exc.error)).removeprefix("row 0: "),
                             raw))
                continue
            table = table.set_column(table.schema.get_field_index(ROW_COLUMN), ROW_COLUMN,
                                     pa.array(np.arange(table.num_rows, dtype=np.int64)))
            return table, good
        return None, good

    def run(self, max_events: int | None = None, idle_exit_s: float | None = None) -> dict[str, int]:
        """Consume until stopped (SIGTERM/SIGINT or ``stop``), ``max_events`` handled, or idle for ``idle_exit_s``.

        Returns:
            Counts: scored, dead (dead-lettered), reclaimed, batches.
        """
        self.ensure_group()
        idle_since = time.monotonic()
        while not self.stop.is_set():
            if self.reload_s and time.monotonic() - self._last_reload >= self.reload_s:
                self._last_reload = time.monotonic()
                self.slot.refresh()
            entries = self.next_batch()
            if entries:
                self.handle(entries)
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                break
            if max_events is not None and self.counts["scored"] + self.counts["dead"] >= max_events:
                break
        return dict(self.counts)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event_at(event_id: str) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(event_seconds(event_id), dt.UTC).replace(tzinfo=None)


def consume(cfg: Any, *, redis_url: str, settings: StreamSettings, sink_target: str, sink_schema: str,
            alias: str | None = None, version: int | None = None, max_events: int | None = None,
            idle_exit_s: float | None = None, reload_s: float = 5.0) -> dict[str, int]:
    """``scoring stream``: load the model, connect, consume until SIGTERM/SIGINT (or the limits).

    Raises:
        ModelStoreError / SuiteError: the model or its suite cannot be loaded; SourceError: Redis cannot be
        reached.
    """
    import redis

    slot = ModelSlot(cfg, alias, version)
    slot.load()
    sink = Sink(sink_target, sink_schema)
    client = redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        sink.close()
        raise SourceError(f"cannot reach Redis at {redact_url(redis_url)}: {redact_url(str(exc))}; start it "
                          "or fix --redis-url") from None
    consumer = Consumer(client, slot, sink, settings, reload_s=reload_s)

    def stop(_signum: int, _frame: Any) -> None:
        consumer.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    logger.info("consuming %s as %s/%s with %s v%s", settings.stream, settings.group, settings.consumer,
                cfg.model.name, slot.current.version if slot.current else None)
    try:
        return consumer.run(max_events, idle_exit_s)
    finally:
        sink.close()
        client.close()
