"""The face: the ``scoring`` command line, everything the DAG does and more, without a scheduler.

One module per command group, each command a thin call into a wing: ``run`` (run, backfill), ``runs`` (the
ledger), ``models`` (train, models list/show/register/promote/suite), ``report`` (report, drift), ``docs``
(Data Docs from the ledger), ``sample`` (sample-data), ``online`` (serve, stream, parity); ``app`` holds the Typer application and what the groups share.

May import: every wing below it (run, quality, reports, models, storage, the ground floor). Nothing in
``scoring`` imports it.
"""

from __future__ import annotations

from scoring.allocators import prefer_system_arrow_pool

prefer_system_arrow_pool()  # before anything imports pyarrow (scoring.allocators says why)

from scoring.cli.app import app  # noqa: E402

# Each module registers its commands on import; this order is the order of `scoring --help`.
# isort: off
from scoring.cli import run, runs, jobs, models, cicd, outcomes, sample, report, docs, online, airflow_setup  # noqa: E402, F401, E501
# isort: on

__all__ = ["app"]
