"""``scoring parity``: replay logged requests and stream events through the batch path, row by row.

The rows the service answered (``online_requests``, logged with ``--log-requests``) and the events the
consumer scored (``stream_predictions``) are written into a DuckDB table the way a batch source holds them
(SQL types from the feature schema, values inserted as SQL parameters, not through the online conversion),
then read by the batch source reader (``DuckDBSource.batches``), gated by the batch gate of the same version
(``prepare_quality``: the suite, the interval rule) and scored by ``gate_and_score`` with the same model
version. Each replayed score is compared with the score given online; the report names every row whose
difference exceeds the tolerance, and every row one path scored and the other refused.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from scoring.config import SourceConfig
from scoring.dates import DataInterval
from scoring.models.contract import contract_of
from scoring.models.scorer import ScoreSpec
from scoring.models.store import ModelStore
from scoring.online.sinks import Sink
from scoring.quality.run_checks import prepare_quality
from scoring.run.chunks import gate_and_score
from scoring.sqlident import quote
from scoring.storage.duck import duck_connect
from scoring.storage.sources.duckdb_source import DuckDBSource

if TYPE_CHECKING:
    from scoring.config import Config

logger = logging.getLogger(__name__)

SQL_TYPES = {"integer": "BIGINT", "float": "DOUBLE", "boolean": "BOOLEAN", "string": "VARCHAR",
             "timestamp": "TIMESTAMP", "date": "DATE", "null": "DOUBLE"}
REPLAY_AT = dt.datetime(2000, 1, 1, 12)  # every replayed row's timestamp: inside the replay interval
TOLERANCE = 1e-12


@dataclass
class ParityReport:
    """Rows compared, the largest difference, and every row that differs or was refused by one path."""

    rows: int = 0
    max_abs_diff: float = 0.0
    differences: list[dict[str, Any]] = field(default_factory=list)
    by_version: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.differences


def _logged(sink: Sink, since: dt.datetime | None) -> list[dict[str, Any]]:
    """Every logged online row as {key, version, row, score (None when refused online), origin}."""
    out = []
    for r in sink.read("online_requests", since):
        out.append({"key": f"http:{r['request_id']}:{r['row_index']}", "version": int(r["model_version"]),
                    "row": json.loads(r["row_json"]), "score": r["score"], "origin": "http"})
    for r in sink.read("stream_predictions", since):
        out.append({"key": f"stream:{r['event_id']}", "version": int(r["model_version"]),
                    "row": json.loads(r["event_json"]), "score": r["score"], "origin": "stream"})
    return out


def _sql_value(value: Any, logical: str) -> Any:
    """A logged JSON value as the SQL parameter a source row would hold: a timestamp with an offset becomes
    its UTC instant (naive, as the session reads a ``timestamptz`` in UTC); everything else as sent."""
    if logical == "timestamp" and isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        return stamp.astimezone(dt.UTC).replace(tzinfo=None) if stamp.tzinfo else stamp
    return value


def _replay_version(cfg: Config, store: ModelStore, version: int, logged: list[dict[str, Any]],
                    folder: Path) -> dict[str, float | None]:
    """Batch scores of ``logged`` rows (all of ``version``) by key; None for a row the batch path refused."""
    mv = store.get(cfg.model.name, version)
    key, ts = cfg.source.key_column, cfg.source.timestamp_column
    features = [f for f in mv.features if f["name"] not in (key, ts)]
    path = folder / f"replay_v{version}.duckdb"
    con = duck_connect(path)
    columns = [f"{quote(key)} VARCHAR", f"{quote(ts)} TIMESTAMP",
               *(f"{quote(f['name'])} {SQL_TYPES.get(f['type'], 'VARCHAR')}" for f in features)]
    con.execute(f"CREATE TABLE replay ({', '.join(columns)})")
    marks = ", ".join(["?"] * (2 + len(features)))
    con.executemany(f"INSERT INTO replay VALUES ({marks})",  # noqa: S608 - quoted identifiers only
                    [[item["key"], REPLAY_AT, *(_sql_value(item["row"].get(f["name"]), f["type"]) for f in features)]
                     for item in logged])
    con.close()
    source_cfg = SourceConfig(kind="duckdb", path=path, table="replay", timestamp_column=ts, key_column=key)
    replay_cfg = cfg.model_copy(update={"source": source_cfg,
                                        "results": cfg.results.model_copy(update={"passthrough": []})})
    source = DuckDBSource(source_cfg)
    try:
        interval = DataInterval(REPLAY_AT.replace(hour=0, tzinfo=dt.UTC),
                                REPLAY_AT.replace(hour=0, tzinfo=dt.UTC) + dt.timedelta(days=1))
        quality = prepare_quality(replay_cfg, mv, source, interval)
        spec = ScoreSpec(key, contract_of(mv.meta), cfg.model.threshold)
        model = store.load(mv)
        scores: dict[str, float | None] = {item["key"]: None for item in logged}
        for batch in source.batches(interval, 10_000):
            result = gate_and_score(model, pa.Table.from_batches([batch]), spec, quality.gate)
            keys = result.predictions.column("source_key").to_pylist()
            values = result.predictions.column("score").to_pylist()
            scores.update(zip(keys, values, strict=True))
        return scores
    finally:
        source.close()


def replay(cfg: Config, sink: Sink, since: dt.datetime | None = None, tolerance: float = TOLERANCE) -> ParityReport:
    """Replay every row logged since ``since`` through the batch path and compare scores.

    Returns:
        The report; ``differences`` lists ``{"key", "origin", "version", "online", "batch", "diff"}`` for
        each row whose |online - batch| exceeds ``tolerance``, or that one path scored and the other did not.

    Raises:
        ModelStoreError: a logged version is no longer in the store.
    """
    logged = _logged(sink, since)
    report = ParityReport()
    store = ModelStore(cfg.model.store)
    with tempfile.TemporaryDirectory(prefix="scoring-parity-") as tmp:
        for version in sorted({item["version"] for item in logged}):
            items = [item for item in logged if item["version"] == version]
            batch = _replay_version(cfg, store, version, items, Path(tmp))
            report.by_version[version] = len(items)
            for item in items:
                online, offline = item["score"], batch.get(item["key"])
                report.rows += 1
                if online is None and offline is None:
                    continue
                diff = abs(online - offline) if online is not None and offline is not None else float("inf")
                report.max_abs_diff = max(report.max_abs_diff, diff)
                if diff > tolerance:
                    report.differences.append({"key": item["key"], "origin": item["origin"], "version": version,
                                               "online": online, "batch": offline, "diff": diff})
    logger.info("parity: %s rows replayed, max |online - batch| %.3g, %s differences", report.rows,
                report.max_abs_diff, len(report.differences))
    return report
