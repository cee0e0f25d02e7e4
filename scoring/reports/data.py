"""What a report shows: the report views for one model and date range, the training reference, and warnings.

Everything is read through the ``ResultsStore`` interface from the report views (a few rows per day), so the
same code serves DuckDB and PostgreSQL results and its cost does not depend on predictions per day.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from scoring.errors import ModelStoreError, ScoringError
from scoring.storage.results.views import DRIFT_TABLE, VIEW_NAMES

if TYPE_CHECKING:
    from scoring.config import Config
    from scoring.storage.results import ResultsStore

logger = logging.getLogger(__name__)

# daily_summary, score_histogram, quarantine_summary, drift_summary, run_history (views), and performance: the
# ``outcomes`` table written by ``scoring outcomes`` (realized and estimated metrics per day and version).
PERFORMANCE = "performance"
OUTCOMES_TABLE = "outcomes"
# challengers: per (day, challenger version) the shadow comparison with the champion (``shadow_summary``) and
# the challenger's own gate results (the day's published run's ``details.shadow``), as `models compare`.
CHALLENGERS = "challengers"
SHADOW_TABLE = "shadow_summary"
SECTIONS = (*VIEW_NAMES, PERFORMANCE, CHALLENGERS)
ORDER = {"daily_summary": "day", "score_histogram": "day, bin", "quarantine_summary": "day, rule, column_name",
         "drift_summary": "day, feature", "run_history": "started_at", PERFORMANCE: "day, model_version",
         CHALLENGERS: "day, model_version"}
CHALLENGER_COLUMNS = ("day", "model_version", "champion_version", "rows_in", "rows", "quarantined", "rules",
                      "champion_rows_in", "champion_quarantined", "rank_correlation", "top_decile_overlap",
                      "mean_diff", "positive_rate_diff", "psi")
PERFORMANCE_COLUMNS = ("day", "model_version", "role", "task", "rows_scored", "labelled", "coverage",
                       "labels_quarantined", "metrics", "estimated", "status", "alerts")


@dataclass
class ReportData:
    """The rows and notes of one report."""

    model: str
    start: dt.date
    end: dt.date
    results: str
    sections: dict[str, pa.Table]
    drift_available: bool
    day: dt.date | None = None  # the day whose score distribution is compared with the training reference
    references: dict[int, dict[str, Any]] = field(default_factory=dict)  # model version -> score reference
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def daily(self) -> pa.Table:
        return self.sections["daily_summary"]

    @property
    def runs(self) -> pa.Table:
        return self.sections["run_history"]

    @property
    def task(self) -> str:
        """The model's task on the last day that recorded one (``binary`` when none did: summaries published
        before the model contract, or views created before it)."""
        if "task" not in self.daily.column_names:
            return "binary"
        tasks = [t for t in self.daily.column("task").to_pylist() if t]
        return tasks[-1] if tasks else "binary"

    def meta(self) -> dict[str, Any]:
        """The report's identity and notes, for machine-readable outputs."""
        return {"model": self.model, "task": self.task, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "results": self.results, "day": self.day.isoformat() if self.day else None,
                "drift_available": self.drift_available, "warnings": self.warnings, "notes": self.notes}


class _Reader:
    """Read queries for one report. DuckDB: one read-only connection for all of them (opening the file is
    most of the cost of reading a few summary rows); other stores: ``store.query``."""

    def __init__(self, store: ResultsStore) -> None:
        self.store, self.cfg, self.table_name = store, store.cfg, store.table_name
        self.con = store.connect(read_only=True) if hasattr(store, "connect") and store.cfg.kind == "duckdb" \
            else None

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        if self.con is None:
            return self.store.query(sql, params)
        return self.con.sql(sql, params=params or None).to_arrow_table()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.con is not None:
            self.con.close()


def _schema_filter(store: ResultsStore) -> tuple[str, list[Any]]:
    if store.cfg.kind == "duckdb":
        return "table_schema = current_schema()", []
    return "table_schema = $1", [store.cfg.db_schema]


def existing(store: ResultsStore, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: table type}`` of the given tables and views that exist in the results schema."""
    where, params = _schema_filter(store)
    marks = ", ".join(f"${len(params) + i + 1}" for i in range(len(names)))
    rows = store.query(f"SELECT table_name, table_type FROM information_schema.tables WHERE {where} "  # noqa: S608
                       f"AND table_name IN ({marks})", [*params, *names]).to_pylist()
    return {r["table_name"]: r["table_type"] for r in rows}


def _range(store: _Reader, view: str, model: str, start: dt.date, end: dt.date) -> pa.Table:
    return store.query(f"SELECT * FROM {store.table_name(view)} "  # noqa: S608 - quoted identifier
                       f"WHERE model_name = $1 AND day >= $2 AND day <= $3 ORDER BY {ORDER[view]}",
                       [model, start, end])


def _performance(store: _Reader, model: str, start: dt.date, end: dt.date, available: bool) -> pa.Table:
    """The ``outcomes`` rows of the range (realized metrics, label coverage, CBPE estimate, status); JSON
    columns as text. Empty (same columns) when ``scoring outcomes`` never ran in these results."""
    if not available:
        return pa.table({c: pa.array([], pa.string()) for c in PERFORMANCE_COLUMNS})
    text = "VARCHAR" if store.cfg.kind == "duckdb" else "text"
    cols = ", ".join(f"CAST({c} AS {text}) AS {c}" if c in ("metrics", "estimated", "alerts") else c
                     for c in PERFORMANCE_COLUMNS)
    return store.query(f"SELECT {cols} FROM {store.table_name(OUTCOMES_TABLE)} "  # noqa: S608 - quoted, constants
                       f"WHERE model_name = $1 AND day >= $2 AND day <= $3 ORDER BY {ORDER[PERFORMANCE]}",
                       [model, start, end])


def _challengers(store: _Reader, model: str, start: dt.date, end: dt.date, available: bool) -> pa.Table:
    """Per (day, challenger version) of the range: its shadow comparison with the champion and its own gate
    results (rows it was given, rows it did not score and by which rule, beside the champion's quarantine on
    the same run), from ``shadow_summary`` and the day's latest successful run's ``details.shadow``."""
    empty = pa.table({c: pa.array([], pa.string()) for c in CHALLENGER_COLUMNS})
    if not available:
        return empty
    shadow = store.query(f"SELECT * FROM {store.table_name(SHADOW_TABLE)} WHERE model_name = $1 "  # noqa: S608
                         f"AND day >= $2 AND day <= $3 ORDER BY {ORDER[CHALLENGERS]}", [model, start, end]).to_pylist()
    if not shadow:
        return empty
    text = "VARCHAR" if store.cfg.kind == "duckdb" else "text"
    runs = store.query(f"SELECT run_id, rows_in, rows_rejected, CAST(details AS {text}) AS details "  # noqa: S608
                       f"FROM {store.table_name('runs')} WHERE model_name = $1 AND status = 'success' "
                       "AND day >= $2 AND day <= $3", [model, start, end]).to_pylist()
    by_run = {r["run_id"]: r for r in runs}
    out = []
    for row in shadow:
        run = by_run.get(row["run_id"]) or {}
        entry = (json.loads(run.get("details") or "{}").get("shadow") or {}).get(str(row["model_version"]), {})
        rules = entry.get("rules") or {}
        out.append({**{c: row.get(c) for c in CHALLENGER_COLUMNS}, "rows_in": entry.get("rows_in"),
                    "quarantined": entry.get("quarantined"),
                    "rules": ", ".join(f"{k} ({v})" for k, v in sorted(rules.items(), key=lambda kv: -kv[1])) or None,
                    "champion_rows_in": run.get("rows_in"), "champion_quarantined": run.get("rows_rejected")})
    return pa.Table.from_pylist(out)


def _known_models(store: _Reader) -> list[str]:
    rows = store.query(f"SELECT DISTINCT model_name FROM {store.table_name('run_history')} "  # noqa: S608
                       "ORDER BY model_name").to_pylist()
    return [r["model_name"] for r in rows]


def _extent(store: _Reader, model: str) -> tuple[dt.date | None, dt.date | None]:
    row = store.query(f"SELECT min(day) AS first, max(day) AS last FROM {store.table_name('run_history')} "  # noqa: S608
                      "WHERE model_name = $1", [model]).to_pylist()[0]
    return row["first"], row["last"]


def load_report(cfg: Config, store: ResultsStore, start: dt.date, end: dt.date, model: str | None = None,
                day: dt.date | None = None) -> ReportData:
    """Read the report views for ``model`` (default: the configured one) from ``start`` to ``end`` inclusive.

    Args:
        cfg: the configuration (model store for the training reference).
        store: the results store.
        start: first day.
        end: last day, inclusive.
        model: model name; default ``cfg.model.name``.
        day: the day whose score distribution is compared with the training reference (default: the last
            day of the range with scored rows).

    Raises:
        ScoringError: with one line saying what is wrong, for an empty range or an unknown model.
    """

    model = model or cfg.model.name
    if end < start:
        raise ScoringError(f"end date {end} comes before start date {start}")
    if day is not None and not start <= day <= end:
        raise ScoringError(f"--day {day} is outside the report range {start} .. {end}")
    where = cfg.results.path if cfg.results.kind == "duckdb" else f"schema {cfg.results.db_schema}"
    found = existing(store, (*VIEW_NAMES, DRIFT_TABLE, OUTCOMES_TABLE, SHADOW_TABLE))
    if any(v not in found for v in VIEW_NAMES):
        from scoring.reports.refresh import refresh_reports

        logger.info("creating the report views in %s", where)
        refresh_reports(cfg)
        found = existing(store, (*VIEW_NAMES, DRIFT_TABLE, OUTCOMES_TABLE, SHADOW_TABLE))
    with _Reader(store) as reader:
        return _load(cfg, reader, start, end, model, day, where, found)


def _load(cfg: Config, store: _Reader, start: dt.date, end: dt.date, model: str, day: dt.date | None, where: str,
          found: dict[str, str]) -> ReportData:
    from scoring.models.store import ModelStore

    models = _known_models(store)
    model_store = ModelStore(cfg.model.store)
    if model not in models:
        if model not in model_store.names():
            known = ", ".join(sorted(set(models) | set(model_store.names()))) or "none"
            raise ScoringError(f"unknown model {model!r}: it has no runs in {where} and is not in the model store "
                               f"{str(cfg.model.store)!r} (known models: {known})")
        raise ScoringError(f"model {model!r} has no runs in {where} yet: score a day first")
    sections = {v: _range(store, v, model, start, end) for v in VIEW_NAMES}
    # The outcomes' warning/alert rows of the ledger (trigger "outcomes") are not runs: the performance
    # section shows them; the run table, timeline and counts are the batch runs'.
    history = sections["run_history"]
    if history.num_rows and "trigger" in history.column_names:
        import pyarrow.compute as pc

        sections["run_history"] = history.filter(pc.fill_null(pc.not_equal(history["trigger"], "outcomes"), True))
    sections[PERFORMANCE] = _performance(store, model, start, end, OUTCOMES_TABLE in found)
    sections[CHALLENGERS] = _challengers(store, model, start, end, SHADOW_TABLE in found)
    data = ReportData(model, start, end, str(where), sections, drift_available=found.get(DRIFT_TABLE) is not None)
    if not data.daily.num_rows and not data.runs.num_rows:
        first, last = _extent(store, model)
        raise ScoringError(f"no runs of model {model!r} between {start} and {end} in {where} "
                           f"(it has runs from {first} to {last})")
    scored = [r["day"] for r in data.daily.to_pylist() if r["rows_scored"]]
    data.day = day or (scored[-1] if scored else None)
    if day is not None and day not in scored:
        data.warnings.append(f"{day}: no scored rows, so there is no score distribution to compare")
    for version in sorted({r["model_version"] for r in data.daily.to_pylist()}):
        try:
            ref = model_store.get(model, version).meta.get("reference", {}).get("score")
        except ModelStoreError as exc:
            ref = None
            data.notes.append(f"no training reference for v{version}: {exc}")
        if ref:
            data.references[version] = ref
    data.warnings.extend(run_warnings(data))
    if data.task == "regression":
        data.notes.append("regression model: the score is the predicted value; bins span each day's range")
    if not data.drift_available:
        data.notes.append("drift monitoring is not installed in these results (no drift table)")
    return data


def run_warnings(data: ReportData) -> list[str]:
    """Failed or unfinished runs, days without runs, and summaries not from the latest successful run."""
    out: list[str] = []
    by_day: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    for r in data.runs.to_pylist():
        by_day[r["day"]].append(r)
    stats = {r["day"]: r for r in data.daily.to_pylist()}
    failed = [r for r in data.runs.to_pylist() if r["status"] != "success"]
    if failed:
        out.append(f"{len(failed)} of {data.runs.num_rows} runs in this range did not succeed")
    for day_, runs in sorted(by_day.items()):
        latest = runs[-1]
        bad = [r for r in runs if r["status"] != "success"]
        if latest["status"] == "success":
            if bad:
                out.append(f"{day_}: {len(bad)} failed attempt(s), then a successful run")
            if day_ in stats and stats[day_]["run_id"] != latest["run_id"]:
                out.append(f"{day_}: the summaries come from run {stats[day_]['run_id']}, not from the latest "
                           f"successful run {latest['run_id']}; run `scoring report --refresh`")
            continue
        what = "failed" if latest["status"] == "failed" else f"is {latest['status']} (unfinished or crashed)"
        shown = ("the predictions shown are from an earlier successful run" if day_ in stats
                 else "no predictions are published for this day")
        error = f" ({latest['error']})" if latest.get("error") else ""
        out.append(f"{day_}: the latest run {what}{error}; {shown}")
    missing = [d for d in _days(data.start, data.end) if d not in by_day and d not in stats]
    if missing:
        out.append(f"{len(missing)} day(s) without any run: {_spans(missing)}")
    return out


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _spans(days: list[dt.date]) -> str:
    """``2026-03-01 .. 2026-03-04, 2026-03-09`` for a sorted list of days."""
    spans: list[list[dt.date]] = []
    for d in days:
        if spans and (d - spans[-1][-1]).days == 1:
            spans[-1].append(d)
        else:
            spans.append([d])
    return ", ".join(f"{s[0]} .. {s[-1]}" if len(s) > 1 else str(s[0]) for s in spans)
