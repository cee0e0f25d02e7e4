"""Named reads of the results tables for the run wing's outcomes and promotion steps (``run/`` holds no SQL).

Each read takes an open ``ResultsStore`` (DuckDB or PostgreSQL: ``$n`` parameters, the store's own quoted
table names) and raises what ``ResultsStore.query`` raises (PublishError / the driver's error when the
results cannot be read, e.g. a table not created yet).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from scoring.storage.results.base import ResultsStore


def _success_runs(runs: str) -> str:
    """``run_id`` of the day's (``$1``) successful runs of the model (``$2``)."""
    return (f"run_id IN (SELECT run_id FROM {runs} WHERE day = $1 AND model_name = $2 "  # noqa: S608
            "AND status = 'success')")


def day_published(store: ResultsStore, model: str, day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """What was published for (``day``, ``model``): the champion's predictions (source_key, score,
    predicted_class, probabilities, model_version), the challengers' shadow predictions (source_key, score,
    predicted_class, model_version) and the distinct quarantined keys of the day's successful runs."""
    t = store.table_name
    champion = store.query(f"SELECT source_key, score, predicted_class, probabilities, model_version "  # noqa: S608
                           f"FROM {t(store.cfg.table)} WHERE day = $1 AND model_name = $2", [day, model])
    shadow = store.query(f"SELECT source_key, score, predicted_class, model_version "  # noqa: S608
                         f"FROM {t('shadow_predictions')} WHERE day = $1 AND model_name = $2", [day, model])
    quarantined = store.query(f"SELECT DISTINCT source_key FROM {t('quarantine')} "  # noqa: S608
                              f"WHERE day = $1 AND model_name = $2 AND {_success_runs(t('runs'))}", [day, model])
    return champion.to_pandas(), shadow.to_pandas(), quarantined.to_pandas()["source_key"]


def published_keys(store: ResultsStore, model: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """(source_key, day) of every row published (champion or challenger) for ``model`` in ``start..end``
    (inclusive), each pair once."""
    t = store.table_name
    sql = (f"SELECT source_key, day FROM {t(store.cfg.table)} WHERE model_name = $1 AND day BETWEEN $2 AND $3 "  # noqa: S608
           f"UNION SELECT source_key, day FROM {t('shadow_predictions')} WHERE model_name = $1 "
           "AND day BETWEEN $2 AND $3")
    return store.query(sql, [model, start, end]).to_pandas()


def quarantined_keys(store: ResultsStore, model: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """(source_key, day) of every row of ``model`` quarantined by a successful run in ``start..end``
    (inclusive; keys that are NULL left out), each pair once."""
    t = store.table_name
    sql = (f"SELECT DISTINCT q.source_key, q.day FROM {t('quarantine')} q JOIN {t('runs')} r USING (run_id) "  # noqa: S608
           "WHERE q.model_name = $1 AND q.day BETWEEN $2 AND $3 AND r.status = 'success' "
           "AND q.source_key IS NOT NULL")
    return store.query(sql, [model, start, end]).to_pandas()


def successful_runs_by_start(store: ResultsStore, model: str) -> list[dict[str, Any]]:
    """(day, rows_in, rows_rejected, details) of every successful ledger row of ``model``, oldest start first
    (so a day's latest successful run comes last; ``details`` as stored: JSON text or a dict)."""
    sql = (f"SELECT day, rows_in, rows_rejected, details FROM {store.table_name('runs')} "  # noqa: S608
           "WHERE model_name = $1 AND status = 'success' ORDER BY started_at")
    return store.query(sql, [model]).to_pylist()
