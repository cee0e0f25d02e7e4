"""`scoring train`: fit the configured features Pipeline on labelled source rows and register it."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa

from scoring.config import Config
from scoring.dates import DataInterval
from scoring.errors import ConfigError, ScoringError
from scoring.models.contract import Contract
from scoring.models.metrics import task_metrics
from scoring.models.reference import business_days
from scoring.models.registry import register_model
from scoring.models.store import ModelStore, ModelVersion
from scoring.sqlident import quote
from scoring.storage.sources import open_source

if TYPE_CHECKING:
    from scoring.storage.sources.base import Source

logger = logging.getLogger(__name__)


def read_window(cfg: Config, start: dt.date, end: dt.date) -> pd.DataFrame:
    """All source rows with ``start <= ts < end + 1 day``, as a DataFrame.

    Raises:
        ScoringError: the window has no rows; the message names the window and the rows the source has
            (their count and first and last timestamps, from one aggregate query), so the user can pick days.
    """
    interval = DataInterval(DataInterval.for_day(start).start, DataInterval.for_day(end).end)
    with open_source(cfg.source) as source:
        table = pa.Table.from_batches(list(source.batches(interval, 500_000)), schema=source.schema())
        if table.num_rows == 0:
            raise ScoringError(f"no source rows between {start} and {end} (inclusive) in {source.describe}: "
                               f"{_extent(cfg, source)}; pick days inside it with --start/--end")
    return table.to_pandas()


def _extent(cfg: Config, source: Source) -> str:
    """"the source has N rows from T1 to T2" (or "the source is empty"), for the empty-window message."""
    ts = quote(cfg.source.timestamp_column)
    everything = DataInterval(dt.datetime(1900, 1, 1, tzinfo=dt.UTC), dt.datetime(9000, 1, 1, tzinfo=dt.UTC))
    row = source.interval_row(everything, f"count(*), min({ts}), max({ts})")
    if row is None:
        return "the source cannot say which days it has"
    count, first, last = row
    if not count:
        return "the source has no rows at all"
    return f"the source has {count:,} rows from {first} to {last}"


def training_days(cfg: Config, frame: pd.DataFrame) -> pd.Series | None:
    """The business day of each training row (for the drift baseline), or None without the timestamp column."""
    ts = cfg.source.timestamp_column
    if ts not in frame.columns:
        return None
    return business_days(frame[ts], cfg.schedule.timezone, cfg.source.timestamp_timezone)


def typical_day_rows(cfg: Config, rows: int, days: int = 14, today: dt.date | None = None) -> tuple[int, str]:
    """The row count of a typical business day, for reference chunks when training rows carry no timestamp:
    the median of the source's non-empty days among the last ``days`` before ``today``; a tenth of the
    ``rows`` training rows when the source has none (or cannot be read). Returns (rows, where it came from)."""
    from scoring.dates import yesterday

    last = today - dt.timedelta(days=1) if today else yesterday(cfg.timezone)
    intervals = [DataInterval.for_day(last - dt.timedelta(days=i), cfg.timezone) for i in range(days)]
    try:
        with open_source(cfg.source) as source:
            counts = [c for c in source.day_counts(intervals) if c]
    except ScoringError as exc:
        logger.info("typical day size not read from the source: %s", exc)
        counts = []
    if counts:
        return int(np.median(counts)), f"median of the source's {len(counts)} non-empty days before {last + dt.timedelta(days=1)}"
    return max(rows // 10, 1), "a tenth of the training rows: the source has no rows in the last 14 days"


def _estimator(kind: str, seed: int) -> object:
    if kind == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000)
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, random_state=seed)


def train_model(cfg: Config, start: dt.date | None = None, end: dt.date | None = None,
                aliases: list[str] = ("champion",), on_step: Callable[[str], None] | None = None) -> ModelVersion:
    """Fit on ``[start, end]`` (default: the config's training window), hold out the last 20% by time
    for metrics, then refit on all rows and register the result under the configured model name.

    The version's expectation suite is the caller's to write (``scoring.quality.suite.write_generated_suite``,
    as ``scoring train`` does): the quality wing sits above the models wing. ``on_step`` is called with
    the name of each long step as it starts (default: logged at INFO).
    """
    from features import build_model

    tcfg = cfg.training
    if tcfg is None:
        raise ConfigError("config has no 'training' section: nothing tells `scoring train` what to fit")
    start, end = start or tcfg.start, end or tcfg.end
    if start is None or end is None:
        raise ConfigError("training window unknown: set training.start/end or pass --start/--end")
    step = on_step or (lambda what: logger.info("training: %s", what))
    step(f"reading the source rows of {start} .. {end}")
    frame = read_window(cfg, start, end)
    if frame.empty:
        raise ScoringError(f"no source rows between {start} and {end} to train on")
    ts, key = cfg.source.timestamp_column, cfg.source.key_column
    frame = frame.sort_values(ts, kind="stable").reset_index(drop=True)
    ranges = {c: (r.get("min"), r.get("max")) for c, r in tcfg.numeric.items()}
    features = [*ranges, *tcfg.categorical]
    y = frame[tcfg.label_column].astype(int)
    cut = int(len(frame) * 0.8)
    step(f"fitting on the first 80% of {len(frame):,} rows, metrics on the last 20%")
    holdout = build_model(ranges, tcfg.categorical, _estimator(tcfg.estimator, tcfg.random_state))
    holdout.fit(frame[features].iloc[:cut], y.iloc[:cut])
    binary = Contract("binary", (), (0, 1), 1)
    metrics = task_metrics(binary, holdout.predict_proba(frame[features].iloc[cut:]), y.iloc[cut:])
    logger.debug("holdout metrics: %s", metrics)  # the CLI prints them once
    step(f"fitting on all {len(frame):,} rows")
    model = build_model(ranges, tcfg.categorical, _estimator(tcfg.estimator, tcfg.random_state))
    model.fit(frame[features], y)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "model.joblib"
        joblib.dump(model, artifact)
        mv = register_model(ModelStore(cfg.model.store), cfg.model.name, artifact, frame,
                            label_column=tcfg.label_column, exclude={ts, key}, window=(start, end),
                            metrics=metrics, aliases=list(aliases), days=training_days(cfg, frame),
                            drift_window=cfg.validation.drift.window_days, threshold=cfg.model.threshold,
                            on_step=on_step, promoted_alias=cfg.model.alias)
    return mv
