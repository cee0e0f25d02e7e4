"""GX Data Docs (HTML) of one run's validation, rendered by Great Expectations from the run's results.

The row-level gate runs as compiled vectorized rules, not through GX's pandas engine (see README, "Data
quality"). Its whole-interval outcome (counts, unexpected percentages, a sample of unexpected values,
observed values of batch rules) is turned into GX's own ``ExpectationSuiteValidationResult`` and GX's
``SiteBuilder`` renders the pages, next to the suite's page. Each model has one site folder
(``<data_docs_dir>/<model>/``, static assets shared; GX's stores are kept in ``.gx_stores/`` so the index
lists every run); each run adds its own validation page, whose path goes to the ledger
(``runs.details.data_docs``). Importing GX costs several seconds of CPU, once per process (a backfill pays
it once); rendering a run's pages takes well under a second. Starting the import in a background thread
during scoring was measured and did not shorten runs on 2 busy cores, so it is plain and synchronous.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from scoring.quality.batch_rules import QualityReport

logger = logging.getLogger(__name__)

SITE = "scoring_run"


def _context(site_dir: Path) -> Any:
    """An in-process GX context whose suites and validation results persist in the site folder
    (``.gx_stores/``), so the site's index lists every run and GX never prunes older runs' pages."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    def files(folder: str) -> dict[str, Any]:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir / ".gx_stores" / folder)}

    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    config.stores["expectations_store"] = {"class_name": "ExpectationsStore", "store_backend": files("suites")}
    config.stores["validation_results_store"] = {"class_name": "ValidationResultsStore",
                                                 "store_backend": files("validations")}
    config.data_docs_sites = {SITE: {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir)},
    }}
    context = gx.get_context(project_config=config, mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def build_data_docs(site_dir: Path, suite: dict[str, Any], report: QualityReport, *, run_name: str,
                    run_time: dt.datetime, batch: str, meta: dict[str, Any] | None = None) -> Path:
    """Render the run's validation into the site at ``site_dir``; returns the validation page's path.

    Args:
        site_dir: the model's Data Docs folder.
        suite: the suite JSON the run used (its page is rendered too).
        report: the run's whole-interval outcome.
        run_name: the run id.
        run_time: when the run started.
        batch: what was validated (source and day), shown as the batch.
        meta: more facts shown on the page (model version, rows, quarantine share, ...).
    """
    # GX logs hundreds of INFO lines while importing; only its warnings matter here.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = _context(site_dir)
    gx_suite = context.suites.add_or_update(gx.ExpectationSuite(**{k: v for k, v in suite.items() if k != "id"}))
    results = []
    for outcome in report.outcomes:
        rule = outcome.rule
        config = ExpectationConfiguration(type=rule.type, kwargs=dict(rule.kwargs), severity=rule.severity,
                                          meta={"scoring_rule": rule.id, "added_by": rule.source})
        results.append(ExpectationValidationResult(success=outcome.success, expectation_config=config,
                                                    result=dict(outcome.result)))
    passed = sum(1 for r in results if r.success)
    run_id = RunIdentifier(run_name=run_name, run_time=run_time)
    validation = ExpectationSuiteValidationResult(
        success=report.success, results=results, suite_name=gx_suite.name,
        statistics={"evaluated_expectations": len(results), "successful_expectations": passed,
                    "unsuccessful_expectations": len(results) - passed,
                    "success_percent": 100 * passed / len(results) if results else None},
        meta={"run_id": run_id, "great_expectations_version": gx.__version__, "batch_spec": {"data_asset_name": batch},
              "batch_markers": {},
              "active_batch_definition": {"datasource_name": "scoring", "data_asset_name": batch,
                                          "batch_definition_name": run_name},
              "scoring": {**(meta or {}), "failures": report.failures, "warnings": report.warnings}},
    )
    key = ValidationResultIdentifier(expectation_suite_identifier=ExpectationSuiteIdentifier(name=gx_suite.name),
                                     run_id=run_id, batch_identifier=batch)
    context.validation_results_store.set(key, validation)
    context.build_data_docs(site_names=[SITE], resource_identifiers=[key, ExpectationSuiteIdentifier(name=gx_suite.name)])
    url = context.get_docs_sites_urls(resource_identifier=key, site_name=SITE)[0]["site_url"]
    return Path(unquote(urlparse(url).path))
