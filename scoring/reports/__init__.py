"""Reports over the results tables: per-day summaries kept at publish time, SQL views, and the report CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scoring.config import Config


def refresh_reports(cfg: Config) -> dict[str, int]:
    """(Re)create the report views and rebuild missing summaries; see ``scoring.reports.refresh``."""
    from scoring.reports.refresh import refresh_reports as refresh

    return refresh(cfg)


__all__ = ["refresh_reports"]
