"""Adaptive micro-batching: concurrent requests coalesce into one call of the batch path's scoring step.

A batch is dispatched when it holds ``max_batch_size`` rows, or when ``max_wait_ms`` has passed since its
first request arrived, whichever comes first. One batch is scored at a time (one model call in a worker
thread, so the event loop keeps accepting requests); the requests that arrive meanwhile form the next
batch. So the batch size adapts to the load: alone, a request is scored at once (with the default
``max_wait_ms`` of 0, Triton's dynamic batcher default ``max_queue_delay_microseconds: 0``); under load,
the rows that queued while the model was busy go together. A request is never split: all its rows are
scored by the same version in the same batch (a request larger than ``max_batch_size`` goes alone).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from scoring.online import metrics
from scoring.online.loaded import Loaded, ModelSlot
from scoring.online.rows import ROW_COLUMN, RowError, to_table
from scoring.quality.gate import apply_gate
from scoring.run.chunks import gate_and_score

logger = logging.getLogger(__name__)


@dataclass
class Answer:
    """What one request gets back: the version that scored it and one result per row, in request order."""

    model_name: str
    model_version: int
    results: list[dict[str, Any]]


ON_RULE = ("reject", "warn")


def _refusal(q: dict[str, Any]) -> dict[str, Any]:
    return {"rule": q["rule"], "column": q["column_name"], "value": q["value"], "reason": q["reason"]}


def score_micro_batch(loaded: Loaded, table: pa.Table, on_rule: str = "reject") -> list[dict[str, Any]]:
    """Score ``table`` (``ROW_COLUMN`` = 0..n-1) with ``loaded``: one result per row, in row order.

    A scored row is ``{"score", "label", "predicted_class", "probabilities"}`` (probabilities a dict of
    class -> probability for classifiers, else None); a refused row is ``{"rejected": {"rule", "column",
    "value", "reason"}}`` (a per-row quality rule of the suite, an unseen category, a model error).
    With ``on_rule="warn"`` a row breaking a rule of the suite is scored all the same and carries
    ``"warning": {...}`` naming the rule; rows the model cannot score (unseen category, model error) are
    still refused.
    """
    flagged: dict[int, dict[str, Any]] = {}
    gate = loaded.gate
    if on_rule == "warn":
        flagged = {int(q["source_key"]): _refusal(q) for q in apply_gate(loaded.gate, table).quarantine.to_pylist()}
        gate = loaded.warn_gate
    result = gate_and_score(loaded.model, table, loaded.spec, gate)
    out: list[dict[str, Any]] = [{} for _ in range(table.num_rows)]
    preds = result.predictions
    keys = preds.column("source_key").to_pylist()
    scores = preds.column("score").to_numpy(zero_copy_only=False)
    labels = preds.column("label").to_pylist()
    classes = preds.column("predicted_class").to_pylist()
    probabilities = preds.column("probabilities").to_pylist()
    for i, key in enumerate(keys):
        out[int(key)] = {"score": float(scores[i]), "label": labels[i], "predicted_class": classes[i],
                         "probabilities": json.loads(probabilities[i]) if probabilities[i] else None}
    for q in result.quarantine.to_pylist():
        out[int(q["source_key"])] = {"rejected": _refusal(q)}
    for row, warning in flagged.items():
        if "score" in out[row]:
            out[row]["warning"] = warning
    return out


@dataclass
class _Item:
    rows: list[Any]
    future: asyncio.Future[Answer]
    arrived: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Queue requests; score them in micro-batches with the slot's current version.

    Args:
        slot: the model in service (read once per batch).
        max_batch_size: rows per batch at most (a larger single request goes alone).
        max_wait_ms: how long a batch may wait for more requests after its first one arrived.
        on_rule: ``reject`` a row breaking a per-row rule of the suite, or ``warn`` (score it, flagged).
        on_batch: called (in the worker thread) with (loaded, requests, answers) after each batch.
    """

    def __init__(self, slot: ModelSlot, max_batch_size: int = 64, max_wait_ms: float = 0.0,
                 on_rule: str = "reject",
                 on_batch: Callable[[Loaded, list[list[Any]], list[Answer | BaseException]], None] | None = None
                 ) -> None:
        self.slot = slot
        self.on_rule = on_rule
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._carry: _Item | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring-batch")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, rows: list[Any]) -> Answer:
        """Score ``rows`` (decoded JSON objects). Raises RowError for a row that does not fit the signature."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(rows, future))
        return await future

    async def _collect(self) -> list[_Item]:
        first = self._carry or await self._queue.get()
        self._carry = None
        items, size = [first], len(first.rows)
        deadline = first.arrived + self.max_wait
        while size < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(item.rows) > self.max_batch_size:
                self._carry = item
                break
            items.append(item)
            size += len(item.rows)
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            try:
                answers = await loop.run_in_executor(self._executor, self._score, [i.rows for i in items])
            except Exception as exc:  # noqa: BLE001 - the requests get the error, the loop keeps serving
                logger.exception("scoring a micro-batch of %s requests failed", len(items))
                answers = [exc] * len(items)
            for item, answer in zip(items, answers, strict=True):
                if item.future.done():
                    continue
                if isinstance(answer, BaseException):
                    item.future.set_exception(answer)
                else:
                    item.future.set_result(answer)

    def _score(self, requests: list[list[Any]]) -> list[Answer | BaseException]:
        """Type each request by the version in service, score the valid ones in one call."""
        loaded = self.slot.current
        if loaded is None:
            raise RuntimeError("no model loaded")
        tables: list[pa.Table | None] = []
        answers: list[Answer | BaseException] = []
        for rows in requests:
            try:
                tables.append(to_table(rows, loaded.features))
                answers.append(Answer(loaded.name, loaded.version, []))
            except RowError as exc:
                tables.append(None)
                answers.append(exc)
        valid = [t for t in tables if t is not None]
        if valid:
            table = pa.concat_tables(valid)
            table = table.set_column(table.schema.get_field_index(ROW_COLUMN), ROW_COLUMN,
                                     pa.array(np.arange(table.num_rows, dtype=np.int64)))
            results = score_micro_batch(loaded, table, self.on_rule)
            metrics.BATCH_ROWS.labels("http").observe(table.num_rows)
            start = 0
            for t, answer in zip(tables, answers, strict=True):
                if t is not None and isinstance(answer, Answer):
                    answer.results = results[start:start + t.num_rows]
                    start += t.num_rows
        if self.on_batch is not None:
            self.on_batch(loaded, requests, answers)
        return answers
