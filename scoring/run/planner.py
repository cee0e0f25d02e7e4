"""The one place a ``RunPlan`` is made, for every entry point that scores a data interval.

``make_plan`` takes the run's open source and the model version already chosen (``choose_model``), and
decides the rest: the engine (``choose_engine``), the columns read, the chunk size (``size_chunks``), the key
ranges (or, for an in-process run, the interval read as one stream of batches), the whole-interval quality
inputs (duplicate keys, text widths) and the challengers. ``plan_run`` is the scheduler's form (the DAG's
``plan`` task, a parallel backfill's day): it chooses the model and opens the source itself. ``scoring run``,
a sequential backfill and late-data re-scoring (``pipeline.run_interval``) call ``make_plan`` with the
source they read the rows from (one snapshot) after their ledger row is written (a failed plan is recorded).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from dataclasses import replace
from typing import Any

from scoring.config import Config
from scoring.dates import DataInterval
from scoring.errors import ScoringError, first_line
from scoring.models.scorer import encoded_width
from scoring.models.store import ModelStore, ModelVersion
from scoring.quality.run_checks import Quality, prepare_quality
from scoring.run.model_choice import choose_engine, choose_model
from scoring.run.runplan import PlannedChunk, PlannedModel, QualityInputs, RunPlan, plan_id_of
from scoring.run.shadow import resolve_challengers
from scoring.run.sizing import read_rows, size_chunks
from scoring.storage.sources import open_source
from scoring.storage.sources.base import KeyRange, key_ranges

logger = logging.getLogger(__name__)

# The one range of a streamed plan: every key of the interval, NULL keys included.
WHOLE_INTERVAL = KeyRange(None, None, True)


def run_key(text: str) -> str:
    """A folder-safe key for a scheduler's run id (e.g. ``scheduled__2026-03-07T00:00:00+00:00``)."""
    key = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")
    return key or "run"


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def plan_run(cfg: Config, interval: DataInterval, version: int | None = None, rows_per_chunk: int | None = None,
             *, key: str = "manual", details: dict[str, Any] | None = None,
             model_as_of: str = "now", batch_rows: int | None = None) -> RunPlan:
    """Choose the model version, open the source and make the plan (``make_plan``) of a scheduler's run:
    the interval's rows cut into key ranges that chunk tasks read one by one.

    Args:
        cfg: the loaded configuration.
        interval: the run's data interval; its start day is the partition.
        version: a model version overriding the alias or pin (else the alias's target now).
        rows_per_chunk: overrides the configured chunk size.
        key: identifies the scheduler's run (its run id); staged chunks are kept per key.
        details: scheduler facts to keep in the ledger (run id, run type, ...).
        model_as_of: ``now`` or ``day``: the alias's target now or on the business day (``model_choice``).
        batch_rows: overrides the rows per read batch of a chunk (default ``sizing.read_rows`` of the chunk
            size).

    Returns:
        The ``RunPlan`` (see ``make_plan``). Raises ModelStoreError / ConfigError from ``choose_model`` and
        SourceError when the source cannot be read.
    """
    mv, rule = choose_model(cfg, interval, version, model_as_of)
    with open_source(cfg.source) as source:
        plan, _ = make_plan(cfg, source, interval, mv, rule, rows_per_chunk, key=key, details=details,
                            batch_rows=batch_rows)
    return plan


def make_plan(cfg: Config, source: Any, interval: DataInterval | None, mv: ModelVersion, rule: dict[str, Any],
              rows_per_chunk: int | None = None, *, key: str = "manual", details: dict[str, Any] | None = None,
              batch_rows: int | None = None, stream: bool = False, models: ModelStore | None = None,
              day: dt.date | None = None, suite_key: str | None = None) -> tuple[RunPlan, Quality | None]:
    """Make the run plan of ``interval`` scored by ``mv``: the one plan maker of every entry point.

    Args:
        cfg: the loaded configuration.
        source: the run's open source; its column selection is left at the columns the run reads
            (``Quality.read_columns``; every column for a streamed plan with challengers, or a job's).
        interval: the run's data interval; its start day is the partition. None for an on-demand job's input
            (``stream`` only: every input row is in scope, read whole, every column).
        mv, rule: the version ``choose_model`` chose and the ledger details naming its rule.
        rows_per_chunk: overrides the configured chunk size.
        key: the scheduler's run id (``run_key`` makes it folder-safe); the trigger of an in-process run, the
            job id of a job.
        details: more ledger details (they win over the model rule's).
        batch_rows: overrides the rows per read batch of a chunk (default ``sizing.read_rows`` of the chunk
            size).
        stream: plan an in-process run (``pipeline.run_interval``): the interval is one range read as a
            stream of batches of ``rows_per_chunk`` rows, each batch one chunk, so no key cuts are made; the
            data quality state is returned, and a source that does not fit the model or suite raises here.
        models: the open model store (default ``cfg.model.store``), read only for a version registered
            before its encoded width was recorded.
        day: a job's partition day (the day it started, UTC), required when ``interval`` is None.
        suite_key: a job's configured key column when it scores with a key of its own (``prepare_quality``).

    Returns:
        ``(plan, quality)``. The ``RunPlan`` holds the model version and its rule, the engine
        (``choose_engine``), the interval's row count, the chunk size (``size_chunks`` over the columns read;
        a scheduler's plan leaves the suite's rule columns out of the estimate, as its key cuts come before
        the quality state), the rows per read batch, the key ranges
        (``lo`` <= key < ``hi``; one range over the whole interval when ``stream``), the whole-interval quality
        inputs (the uniqueness rules' duplicate values, the text widths of the columns read; None when the
        source does not fit, for the scheduler's ``plan`` task to report in one line), and with
        ``model.challengers`` the challenger versions and those left out (``shadow_failed``).
        ``quality`` is the run's data quality state (``prepare_quality``), or None when the source did not
        fit (never None when ``stream``).

    Raises:
        ValueError: no ``interval`` in a plan that is not streamed or names no ``day``.
        SchemaError, SuiteError (``stream`` only): the source does not fit the model or the suite.
        ModelStoreError: the version's artifact cannot be read (only when its width was not recorded).
    """
    engine = choose_engine(cfg, mv)
    width = mv.meta.get("encoded_width")  # recorded at registration; the model is unpickled where it scores
    if width is None:  # a version registered before the width was recorded
        store = models if models is not None else ModelStore(cfg.model.store)
        width = encoded_width(store.load(mv), len(mv.features))
    if interval is None and (not stream or day is None):
        raise ValueError("a plan without an interval (a job's) is streamed and names its day")
    budget, fixed = cfg.chunking.memory_budget_mib, rows_per_chunk or cfg.chunking.rows_per_chunk
    quality: Quality | None
    if stream:
        # Sized on exactly what the run reads: the data quality state first (its columns), then every column
        # when challengers read the same batches with inputs of their own.
        quality = prepare_quality(cfg, mv, source, interval, suite_key)
        whole = cfg.model.challengers or interval is None  # a job's readers stream every column of its input
        source.select_columns(None if whole else quality.read_columns)
        size = size_chunks(source, interval, int(width), budget, fixed)
        rows = source.count(interval)
        cuts: list[Any] = []
        # text widths: sizing's query, cached by the source (a job's input has none)
        inputs: QualityInputs | None = _inputs(quality, {} if interval is None else source.text_widths(interval))
    else:
        assert interval is not None  # refused above
        # Sized on what the chunk tasks read: the key, the timestamp, the model's inputs, passthrough columns
        # (the columns of the suite's rules, read too, are left out: the key cuts come before the quality
        # state, which takes the duplicate keys found with them).
        names = set(source.schema().names)
        source.select_columns([c for c in (cfg.source.key_column, cfg.source.timestamp_column,
                                           *(f["name"] for f in mv.features), *cfg.results.passthrough)
                               if c in names])
        size = size_chunks(source, interval, int(width), budget, fixed)
        rows = source.count(interval)
        wanted = max(1, math.ceil(rows / size))
        # The key cuts and the key's duplicate values from one sort of the day's keys where the source can
        # (PostgreSQL, integer or text keys); else the cuts query, and prepare_quality queries duplicates.
        both = source.key_cuts_and_duplicates(interval, wanted) \
            if wanted > 1 and hasattr(source, "key_cuts_and_duplicates") else None
        cuts = both[0] if both is not None else source.key_cuts(interval, wanted) if wanted > 1 else []
        known = {cfg.source.key_column: both[1].to_pylist()} if both is not None else None
        # What every chunk needs from the whole interval, measured once here: the uniqueness rules' duplicate
        # values and the text widths of the columns the chunks read (their read limit), so that a chunk task
        # only reads its key range.
        quality, inputs = _quality_and_inputs(cfg, mv, source, interval, known)
    challengers: tuple[int, ...] | None = None
    failed: dict[str, str] | None = None
    if cfg.model.challengers:
        versions, failed = resolve_challengers(cfg, mv.version)
        challengers = tuple(v.version for v in versions)
    ranges = [WHOLE_INTERVAL] if stream else key_ranges(cuts)
    plan = RunPlan(
        plan_id="", run_key=run_key(key), day=interval.day if interval is not None else day, interval=interval,
        model=PlannedModel(mv.name, mv.version), rows=rows, rows_per_chunk=size,
        chunks=tuple(PlannedChunk(i, _jsonable(r.lo), _jsonable(r.hi), r.nulls) for i, r in enumerate(ranges)),
        planned_at=dt.datetime.now(dt.UTC),
        details={**rule, **({} if interval is None else {"interval": interval.describe()}), **(details or {})},
        quality_inputs=inputs, engine=engine, challengers=challengers, shadow_failed=failed,
        read_rows=size if stream else batch_rows or read_rows(size))
    plan = replace(plan, plan_id=plan_id_of(plan.to_json()))
    logger.info("plan %s: %s rows of %s in %s of <= %s rows (read in batches of %s), %s v%s (%s engine)",
                plan.plan_id, rows, source.describe if interval is None else interval.day,
                "one stream of chunks" if stream else f"{len(plan.chunks)} chunks", size, plan.read_rows, mv.name,
                mv.version, engine["engine"])
    return plan, quality


def _quality_and_inputs(cfg: Config, mv: ModelVersion, source: Any, interval: DataInterval,
                        duplicates: dict[str, list[Any]] | None) -> tuple[Quality | None, QualityInputs | None]:
    """The run's data quality state and what every chunk needs of it from the whole interval: the uniqueness
    rules' duplicate values and the text widths of the columns a chunk reads. Both are None when the source
    does not fit the model or suite (the ``plan`` task then fails the run in one line, as it always did).
    ``duplicates``: values the plan already found per column (not queried)."""
    try:
        quality = prepare_quality(cfg, mv, source, interval, duplicates=duplicates)
    except ScoringError as exc:
        logger.info("plan without quality inputs (%s); validation decides", first_line(exc))
        return None, None
    source.select_columns(quality.read_columns)
    return quality, _inputs(quality, source.text_widths(interval))


def _inputs(quality: Quality, widths: dict[str, tuple[float, int]]) -> QualityInputs:
    """A plan's quality inputs: the uniqueness rules' duplicate values and the text widths measured over the
    interval (``Source.text_widths``: column -> (mean bytes, longest bytes))."""
    return QualityInputs(quality.duplicate_lists(), {k: list(v) for k, v in widths.items()})
