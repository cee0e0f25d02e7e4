"""The run plan: a frozen, typed record of everything a run decided before scoring, with JSON in/out.

``plan.plan_run`` makes it (the one place a run's model version, engine, chunk size, key ranges and
challengers are chosen); every step after it (the DAG's chunk tasks, publish, a parallel backfill's worker
and parent, the ledger outcome) reads it. Between Airflow tasks it travels as an XCom: ``to_json`` gives a
plain dict of JSON types and ``from_json`` reads it back, including plans of runs in flight made before a
field existed (``quality_inputs``, ``engine``, ``read_rows``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from scoring.dates import DataInterval

# The engine of a plan made before the engine was planned: those runs scored with the native model.
UNPLANNED_ENGINE: dict[str, Any] = {"requested": "native", "engine": "native",
                                    "rule": "plan made before the engine was planned"}


@dataclass(frozen=True)
class PlannedModel:
    """The model version the plan scores with."""

    name: str
    version: int


@dataclass(frozen=True)
class PlannedChunk:
    """One chunk: its index and key range (``lo`` <= key < ``hi``; ``nulls``: the NULL keys belong to it).

    Bounds are JSON scalars (a key that is not a number or text is carried as its text)."""

    index: int
    lo: Any
    hi: Any
    nulls: bool

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "lo": self.lo, "hi": self.hi, "nulls": self.nulls}


@dataclass(frozen=True)
class QualityInputs:
    """What every chunk needs from the whole interval, measured once at plan time: the uniqueness rules'
    duplicate values (column -> values) and the text widths of the columns a chunk reads (column -> widths)."""

    duplicates: dict[str, list[Any]]
    text_widths: dict[str, list[int]]


@dataclass(frozen=True)
class RunPlan:
    """A planned run of one (day, model) partition, or of an on-demand job's input.

    Attributes:
        plan_id: 12 hex digits over the stable fields (the staging folder of the plan's chunks).
        run_key: the scheduler's run, folder-safe (staged chunks are kept per key).
        day: the partition (a job's: the day it started, UTC); interval: its data interval (None for a job:
            every input row is in scope).
        model: the version scoring it; engine: the engine chosen for it (``model_choice.choose_engine``:
            ``requested``, ``engine`` native | compiled, ``fallback`` when compiled was asked and cannot be).
        rows: source rows of the interval when planned; rows_per_chunk: the sizing rule's result.
        chunks: the key ranges, cut once.
        read_rows: rows per read batch of a chunk (``sizing.read_rows``): a chunk's range is read as a stream
            of such batches, each staged as a part of the chunk (``Stage.write_parts``); None for plans made
            before it existed (read in batches of ``rows_per_chunk``, staged in parts all the same).
        planned_at: when planned (aware UTC); the ledger's ``started_at``.
        details: ledger details (the model rule, the interval, scheduler facts).
        quality_inputs: None for plans made before they existed, or when the source did not fit (validate
            then fails in one line).
        challengers: the challenger versions scored chunk by chunk (None without ``model.challengers``);
        shadow_failed: challengers left out at plan time, with the reason.
    """

    plan_id: str
    run_key: str
    day: dt.date
    interval: DataInterval | None
    model: PlannedModel
    rows: int
    rows_per_chunk: int
    chunks: tuple[PlannedChunk, ...]
    planned_at: dt.datetime
    details: dict[str, Any] = field(default_factory=dict)
    quality_inputs: QualityInputs | None = None
    engine: dict[str, Any] = field(default_factory=lambda: dict(UNPLANNED_ENGINE))
    challengers: tuple[int, ...] | None = None
    shadow_failed: dict[str, str] | None = None
    read_rows: int | None = None

    @property
    def indexes(self) -> list[int]:
        """The chunk indexes, in order."""
        return [c.index for c in self.chunks]

    def to_json(self) -> dict[str, Any]:
        """The plan as a dict of JSON types (an Airflow XCom); ``from_json`` reads it back equal."""
        out: dict[str, Any] = {
            "plan_id": self.plan_id, "run_key": self.run_key, "day": self.day.isoformat(),
            "interval": None if self.interval is None else {
                "start": self.interval.start.isoformat(), "end": self.interval.end.isoformat(),
                "zone": self.interval.zone},
            "model": {"name": self.model.name, "version": self.model.version}, "rows": self.rows,
            "rows_per_chunk": self.rows_per_chunk, "chunks": [c.to_json() for c in self.chunks],
            "planned_at": self.planned_at.isoformat(), "details": self.details,
            "quality_inputs": None if self.quality_inputs is None else {
                "duplicates": self.quality_inputs.duplicates, "text_widths": self.quality_inputs.text_widths},
            "engine": self.engine,
        }
        if self.read_rows is not None:
            out["read_rows"] = self.read_rows
        if self.challengers is not None:
            out["challengers"] = list(self.challengers)
            out["shadow_failed"] = dict(self.shadow_failed or {})
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any] | RunPlan) -> RunPlan:
        """Read a plan from ``to_json``'s dict (or return a ``RunPlan`` as is). Plans made before
        ``quality_inputs`` or ``engine`` existed read as None / the native engine.

        Raises:
            KeyError, ValueError: ``raw`` is not a plan.
        """
        if isinstance(raw, RunPlan):
            return raw
        iv = raw["interval"]
        inputs = raw.get("quality_inputs")
        return cls(
            plan_id=raw["plan_id"], run_key=raw["run_key"], day=dt.date.fromisoformat(raw["day"]),
            interval=None if iv is None else DataInterval(
                dt.datetime.fromisoformat(iv["start"]), dt.datetime.fromisoformat(iv["end"]), iv.get("zone", "UTC")),
            model=PlannedModel(raw["model"]["name"], int(raw["model"]["version"])), rows=int(raw["rows"]),
            rows_per_chunk=int(raw["rows_per_chunk"]),
            chunks=tuple(PlannedChunk(int(c["index"]), c["lo"], c["hi"], bool(c["nulls"])) for c in raw["chunks"]),
            planned_at=dt.datetime.fromisoformat(raw["planned_at"]), details=dict(raw.get("details") or {}),
            quality_inputs=None if inputs is None else QualityInputs(dict(inputs.get("duplicates") or {}),
                                                                     dict(inputs.get("text_widths") or {})),
            engine=dict(raw.get("engine") or UNPLANNED_ENGINE),
            challengers=None if raw.get("challengers") is None else tuple(int(v) for v in raw["challengers"]),
            shadow_failed=None if raw.get("challengers") is None else dict(raw.get("shadow_failed") or {}),
            read_rows=None if raw.get("read_rows") is None else int(raw["read_rows"]),
        )


def plan_id_of(plan: dict[str, Any]) -> str:
    """The id of a plan's JSON (without ``plan_id``): a hash of the fields that decide what is staged, so the
    same run key, day, model, chunking and challengers give the same id (and reuse the staged chunks)."""
    stable = {k: plan[k] for k in ("run_key", "day", "interval", "model", "rows_per_chunk", "chunks",
                                   "challengers", "read_rows") if k in plan}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]
