"""Score and stage chunks, serially or over a process pool (one model load per worker)."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from scoring.allocators import fix_mmap_threshold
from scoring.models.compiled.predictor import CompiledModel
from scoring.models.scorer import ScoreSpec, score_table
from scoring.procs import die_with_parent
from scoring.quality.compile import Rule
from scoring.quality.drift import chunk_counts
from scoring.quality.gate import Gate, apply_gate
from scoring.quality.quarantine import quarantine_rows
from scoring.storage.object_options import connection_options, use_connection_options
from scoring.storage.staging import ChunkManifest, Stage, input_digest

logger = logging.getLogger(__name__)


def key_gate(key_column: str) -> Gate:
    """The minimal gate (rows without a key are quarantined), for callers that bring no suite."""
    return Gate(key_column, (Rule("key", "expect_column_values_to_not_be_null", {"column": key_column}),))


@dataclass
class GatedScores:
    """One gated and scored table: predictions, quarantine records (gate and model refusals), JSON counts."""

    predictions: pa.Table
    quarantine: pa.Table
    stats: dict[str, Any]
    scored_rows: pa.Table


def gate_and_score(model: Any, table: pa.Table, spec: ScoreSpec, gate: Gate | None = None) -> GatedScores:
    """Gate then score the rows of ``table``: the one conversion + scoring step of every entry point.

    Batch chunks (``process_chunk``), the HTTP service's micro-batches and the stream consumer's
    (``scoring.online``) all call this, so a row gets the same gate, the same contract conversion
    (``scoring.models.convert``) and the same model call wherever it comes from.

    Returns:
        Predictions in row order of the rows that passed (``PREDICTION_SCHEMA`` plus passthrough), one
        quarantine record per refused row (``QUARANTINE_SCHEMA``; ``source_key`` is the row's key), the
        gate's counts (``stats["gate"]``) and refusal counts (``stats["refused"]``), and the scored rows.
    """
    checked = apply_gate(gate or key_gate(spec.key_column), table)
    scored = score_table(model, checked.good, spec)
    quarantine = pa.concat_tables([checked.quarantine, *(
        quarantine_rows(checked.good, r.rows, r.column, r.rule, spec.key_column, r.reason)
        for r in scored.refused)])
    stats: dict[str, Any] = {"gate": checked.stats}
    if scored.refused:
        stats["refused"] = {f"{r.rule}:{r.column}": int(r.rows.size) for r in scored.refused}
    return GatedScores(scored.predictions, quarantine, stats, scored.scored_rows)


def engine_of(model: Any) -> str:
    """``compiled`` for a compiled predictor, else ``native``: what scored a chunk (its manifest's
    ``stats["engine"]``; publish records what the run's chunks used)."""
    return "compiled" if isinstance(model, CompiledModel) else "native"


def process_chunk(model: Any, batch: pa.RecordBatch | pa.Table, index: int, spec: ScoreSpec,
                  stage: Stage, gate: Gate | None = None, digest: str = "") -> ChunkManifest:
    """Gate, score and stage one chunk. Pure except for the staged files.

    Rows failing a quarantining rule of ``gate`` are staged as quarantine records and not scored, and so are
    rows the model cannot score (``score_table``'s refusals: an unseen category, ``model_error`` with the
    model's message in ``reason``); the gate's counts and the drift counts of the scored rows go into the
    manifest's ``stats``. ``digest`` identifies the chunk's source rows (a rerun reuses the chunk only when
    they are the same).
    """
    fix_mmap_threshold()
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    result = gate_and_score(model, table, spec, gate)
    predictions, stats = result.predictions, result.stats
    stats["engine"] = engine_of(model)
    if gate is not None and gate.drift:
        started = time.perf_counter()
        stats["drift"] = chunk_counts(gate.drift, result.scored_rows, predictions.column("score").to_numpy())
        stats["drift_s"] = time.perf_counter() - started
    manifest = stage.write(index, table.num_rows, predictions, result.quarantine, stats, digest)
    logger.debug("chunk %s: %s in, %s scored, %s quarantined", index, table.num_rows,
                 manifest.scored, manifest.rejected)
    return manifest


def _read_next(batches: Iterator[pa.RecordBatch]) -> tuple[pa.RecordBatch, str] | None:
    batch = next(batches, None)
    return None if batch is None else (batch, input_digest(batch))


def prefetched(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[pa.RecordBatch, str]]:
    """``(batch, input_digest(batch))`` for each batch, in order, the next one read and hashed in a background
    thread while the caller scores the current one (at most one batch ahead, so two chunks are in memory).

    The source iterator is only ever advanced by that one thread, one call at a time; its exceptions are
    raised here, at the batch they stopped. DuckDB, psycopg and pyarrow release the GIL while they read and
    hash, so the read overlaps the model's own work.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring-prefetch") as pool:
        ahead = pool.submit(_read_next, batches)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(_read_next, batches)
            yield item


_WORKER_MODEL: Any = None


def _init_worker(loader: Callable[[], Any], object_store: dict[str, str] | None = None) -> None:
    global _WORKER_MODEL
    die_with_parent()
    use_connection_options(object_store)  # the parent's model store credentials (a spawned process has none)
    _WORKER_MODEL = loader()


def _worker(batch: pa.RecordBatch, index: int, spec: ScoreSpec, root: Path, gate: Gate | None,
            digest: str) -> ChunkManifest:
    return process_chunk(_WORKER_MODEL, batch, index, spec, Stage(root), gate, digest)


def run_chunks(batches: Iterator[pa.RecordBatch], model: Any, loader: Callable[[], Any], spec: ScoreSpec,
               stage: Stage, workers: int = 1,
               on_chunk: Callable[[ChunkManifest], None] | None = None,
               gate: Gate | None = None, indexes: Iterable[int] | None = None) -> list[ChunkManifest]:
    """Process every batch; chunks already staged and verified from the same rows are reused, not rescored.

    The one chunk loop of every run: all chunks of a CLI run or backfill day, one DAG task's chunk (its key
    range), a challenger's chunks, a job's input stream.

    Args:
        batches: the interval's record batches, in a stable order.
        model: the loaded model (used when ``workers`` is 1).
        loader: loads the model in a worker process (used when ``workers`` > 1).
        spec: key, features and threshold.
        stage: where chunk outputs go.
        workers: processes; in-flight chunks are bounded to 2 per worker to bound memory. With 1, the chunks
            are scored here, the next batch read ahead in a thread (``prefetched``).
        on_chunk: called after each chunk (progress).
        gate: the run's data quality gate (default: quarantine rows without a key only).
        indexes: the chunk index of each batch (default 0, 1, 2, ...): a plan's chunks keep their own.
    """
    fix_mmap_threshold()
    done: list[ChunkManifest] = []
    numbers = iter(indexes) if indexes is not None else itertools.count()

    def finish(manifest: ChunkManifest) -> None:
        done.append(manifest)
        if on_chunk:
            on_chunk(manifest)

    if workers <= 1:
        for index, (batch, digest) in zip(numbers, prefetched(batches), strict=False):
            finish(stage.completed(index, digest) or process_chunk(model, batch, index, spec, stage, gate, digest))
        return done
    pending: deque[Future[ChunkManifest]] = deque()
    # spawn, not fork: the parent holds DuckDB and OpenMP threads, which a forked child can deadlock on.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(loader, connection_options())) as pool:
        for index, batch in zip(numbers, batches, strict=False):
            digest = input_digest(batch)
            reused = stage.completed(index, digest)
            if reused:
                finish(reused)
                continue
            pending.append(pool.submit(_worker, batch, index, spec, stage.root, gate, digest))
            while len(pending) >= 2 * workers:
                finish(pending.popleft().result())
        while pending:
            finish(pending.popleft().result())
    return sorted(done, key=lambda m: m.index)
