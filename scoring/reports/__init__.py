"""Reports wing: what a data team reads after the runs, from small per-day summaries, never the predictions.

- ``summaries``: per-(day, model) statistics, score bins and quarantine counts computed from the staged
  chunks and published in the same transaction as the predictions.
- ``refresh``: recreate the report views and rebuild missing or stale summaries (the report DAG's task).
- ``data``: load a report (views, warnings, notes) for a date range.
- ``outputs``, ``charts``, ``html``: table/CSV/JSON output, matplotlib SVG charts, the self-contained HTML page.

The view DDL itself lives with the stores (``scoring.storage.results.views``).

May import: ``scoring.models`` (reference statistics), ``scoring.storage`` and the ground floor. Never
``quality``, ``run`` or ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scoring.config import Config


def refresh_reports(cfg: Config) -> dict[str, int]:
    """(Re)create the report views and rebuild missing summaries; see ``scoring.reports.refresh``."""
    from scoring.reports.refresh import refresh_reports as refresh

    return refresh(cfg)


__all__ = ["refresh_reports"]
