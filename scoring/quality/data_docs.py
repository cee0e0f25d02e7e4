"""GX Data Docs (HTML) of runs' validations, rendered by Great Expectations from the run ledger.

The row-level gate runs as compiled vectorized rules, not through GX's pandas engine (see README, "Data
quality"). A run records its whole-interval outcome in the ledger (``runs.details.validation``: every rule
with its GX result dict, in ``outcomes``) and never imports GX. The pages are built afterwards, from the
ledger row and the suite file, by ``scoring docs`` (``build_docs``) or the report DAG (``docs_rows`` then
``render_docs``): the outcome becomes GX's own ``ExpectationSuiteValidationResult`` and GX's ``SiteBuilder``
renders it next to the suite's page. Each model has one site folder (``<data_docs_dir>/<model>/``, static
assets shared; GX's stores are kept in ``.gx_stores/`` so the index lists every run built). The pages then
get their CSS/JS from copies shipped in the package (``scoring.quality.offline``), so they render styled
offline. Importing GX costs several seconds of CPU, once per process; rendering a run's pages well under one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

from scoring.config import default_data_docs
from scoring.errors import ScoringError
from scoring.quality.batch_rules import QualityReport
from scoring.quality.offline import make_offline
from scoring.quality.run_checks import suite_sha256
from scoring.quality.suite import SuiteError, read_suite
from scoring.storage.objects import is_uri, location
from scoring.storage.stagefs import StagePath

if TYPE_CHECKING:
    from scoring.config import Config

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
                    run_time: dt.datetime, batch: str, meta: dict[str, Any] | None = None,
                    rule_meta: dict[str, dict[str, Any]] | None = None) -> Path:
    """Render the run's validation into the site at ``site_dir``, with its assets local; returns the
    validation page's path.

    Args:
        site_dir: the model's Data Docs folder.
        suite: the suite JSON the run used (its page is rendered too).
        report: the run's whole-interval outcome.
        run_name: the run id.
        run_time: when the run started.
        batch: what was validated (source and day), shown as the batch.
        meta: more facts shown on the page (model version, rows, quarantine share, ...).
        rule_meta: each rule's ``meta`` from the suite (by rule id), shown with its result.
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
                                          meta={**(rule_meta or {}).get(rule.id, {}), "scoring_rule": rule.id,
                                                "added_by": rule.source})
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
    make_offline(site_dir)
    page = Path(unquote(urlparse(url).path))
    add_verdict(page, verdict(report))
    return page


def verdict(report: QualityReport) -> str:
    """One plain sentence on the run's validation: failed, passed, or passed with warnings (and which).

    GX's page says "Succeeded" next to "N unsuccessful expectations" when only warning-severity rules
    failed; this sentence says that those were warnings, which do not fail a run.
    """
    if not report.success:
        return f"Failed: {'; '.join(report.failures)}"
    if report.warnings:
        return (f"Passed with {len(report.warnings)} warning(s) (rules of severity warning or info: counted and "
                f"shown, they do not fail the run nor quarantine rows): {'; '.join(report.warnings)}")
    return "Passed: no rule failed the run and no warning rule fired (rows quarantined by critical row rules are listed with their rules below)."


BANNER = "<!-- scoring verdict -->"


def add_verdict(page: Path, sentence: str) -> None:
    """Put ``sentence`` at the top of the validation page's body (once; replaced when rebuilt)."""
    import html as html_lib
    import re

    text = page.read_text(encoding="utf-8")
    text = re.sub(re.escape(BANNER) + r".*?" + re.escape(BANNER), "", text, flags=re.S)
    colour = "#f8d7da" if sentence.startswith("Failed") else "#fff3cd" if "warning" in sentence else "#d1e7dd"
    banner = (f'{BANNER}<div role="status" style="background:{colour};padding:12px 16px;margin:0;'
              f'font:16px/1.4 sans-serif;border-bottom:1px solid #999"><strong>Run verdict.</strong> '
              f"{html_lib.escape(sentence)}</div>{BANNER}")
    text, found = re.subn(r"(<body[^>]*>)", lambda m: m.group(1) + banner, text, count=1)
    if found:
        page.write_text(text, encoding="utf-8")


RUN_FIELDS = ("run_id", "day", "model_name", "model_version", "status", "rows_in", "rows_rejected",
              "rows_scored", "started_at", "details")


def docs_site(cfg: Config, model: str) -> Path | StagePath:
    """The model's Data Docs site folder (``validation.data_docs_dir/<model>``): a local Path, or a StagePath
    when ``data_docs_dir`` is an object-store URI (``s3://...``)."""
    if is_uri(cfg.validation.data_docs_dir or ""):
        return location(cfg.validation.data_docs_dir, "validation.data_docs_dir") / model
    base = cfg.path.parent if cfg.path else Path.cwd()
    return Path(cfg.validation.data_docs_dir or default_data_docs(cfg.results.staging_dir, base)) / model


class RemoteSite:
    """A Data Docs site kept on an object store, built in a local copy: ``pull`` downloads every object of the
    site (the GX stores included, so the index lists every run), GX builds into the copy, ``push`` uploads each
    file that is new or changed (whole-object writes). Pages and validation results are per run, so two hosts
    building at once lose nothing but may each write the index; the next build lists every run again."""

    def __init__(self, remote: StagePath) -> None:
        self.remote = remote
        self.local = Path(tempfile.mkdtemp(prefix="scoring-docs-"))
        self.pulled: dict[str, str] = {}

    def pull(self) -> Path:
        for info in self.remote.children(recursive=True):
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[len(self.remote.path) + 1:]
            data = StagePath(self.remote.fs, info.path).read_bytes()
            (self.local / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.local / rel).write_bytes(data)
            self.pulled[rel] = hashlib.sha256(data).hexdigest()
        return self.local

    def push(self) -> int:
        """Upload what the build added or changed; returns how many objects were written."""
        written = 0
        for file in sorted(self.local.rglob("*")):
            rel = file.relative_to(self.local).as_posix()
            if file.is_file() and self.pulled.get(rel) != hashlib.sha256(data := file.read_bytes()).hexdigest():
                (self.remote / rel).write_bytes(data)
                written += 1
        return written

    def public(self, page: Path) -> str:
        """The URI of a page built in the local copy."""
        return str(self.remote / page.relative_to(self.local).as_posix())

    def close(self) -> None:
        shutil.rmtree(self.local, ignore_errors=True)


def docs_rows(cfg: Config, *, day: dt.date | None = None, run_ids: list[str] | None = None,
              model: str | None = None) -> list[dict[str, Any]]:
    """The ledger rows to build Data Docs from, JSON-able (the report DAG passes them between tasks).

    Args:
        cfg: the configuration (results store, model name).
        day: the latest run of this day that recorded a validation; with neither ``day`` nor ``run_ids``,
            the latest such run of the model.
        run_ids: these runs (any model), in this order.
        model: the model (default the configured one) for ``day`` or the latest run.

    Returns:
        Rows with ``RUN_FIELDS``; ``day`` and ``started_at`` as ISO strings, ``details`` a dict.

    Raises:
        ScoringError: no such run, or it recorded no validation (one line naming it).
    """
    from scoring.storage.results import open_results

    results = open_results(cfg.results)
    model = model or cfg.model.name
    cols = ", ".join(RUN_FIELDS)
    table = results.table_name("runs")
    if run_ids:
        marks = ", ".join(f"${i + 1}" for i in range(len(run_ids)))
        found = {r["run_id"]: r for r in results.query(
            f"SELECT {cols} FROM {table} WHERE run_id IN ({marks})", list(run_ids)).to_pylist()}  # noqa: S608
        missing = [r for r in run_ids if r not in found]
        if missing:
            raise ScoringError(f"run {missing[0]!r} is not in the run ledger")
        rows = [found[r] for r in run_ids]
    else:
        sql = f"SELECT {cols} FROM {table} WHERE model_name = $1"  # noqa: S608 - quoted identifier
        params: list[Any] = [model]
        if day is not None:
            sql += " AND day = $2"
            params.append(day)
        rows = [r for r in results.query(sql + " ORDER BY started_at DESC", params).to_pylist()
                if "validation" in json.loads(r["details"] or "{}")][:1]
        if not rows:
            raise ScoringError(f"no run of {model}{f' on {day}' if day else ''} recorded a data quality "
                               "validation in the run ledger")
    out = []
    for row in rows:
        details = json.loads(row["details"] or "{}")
        if "validation" not in details:
            raise ScoringError(f"run {row['run_id']} recorded no data quality validation "
                               f"(status {row['status']}: it stopped before its checks)")
        out.append({**row, "day": str(row["day"]), "started_at": row["started_at"].isoformat(),
                    "details": details})
    return out


def render_docs(cfg: Config, rows: list[dict[str, Any]]) -> list[str]:
    """Build the Data Docs page of each ledger row (from ``docs_rows``) into the model's site.

    Runs recorded before the ledger kept every outcome had their page built during the run: that page is
    returned as it is (made offline) when it still exists.

    Returns:
        The validation pages' paths, in the order of ``rows``.

    Raises:
        ScoringError: the suite file is gone, or an old run's page is gone (one line naming it).
    """
    pages: list[str] = []
    remote: dict[str, RemoteSite] = {}
    try:
        for row in rows:
            pages.append(_render_row(cfg, row, remote))
        for site in remote.values():
            logger.info("Data Docs: %s objects written to %s", site.push(), site.remote)
    finally:
        for site in remote.values():
            site.close()
    return pages


def _render_row(cfg: Config, row: dict[str, Any], remote: dict[str, RemoteSite]) -> str:
    """Build one ledger row's page (into the local copy of a remote site); returns its path or URI."""
    where = docs_site(cfg, row["model_name"])
    if isinstance(where, StagePath):
        if row["model_name"] not in remote:
            remote[row["model_name"]] = RemoteSite(where)
            remote[row["model_name"]].pull()
        site = remote[row["model_name"]].local
    else:
        site = where
    details = row["details"]
    validation = details["validation"]
    if "outcomes" not in validation:
        old = details.get("data_docs")
        if old and Path(old).is_file():
            make_offline(site)
            return old
        raise ScoringError(f"run {row['run_id']} was recorded before the ledger kept every rule's result "
                           "and its page is gone; score the day again to get its Data Docs")
    path = location(details["suite"], "suite") if is_uri(details["suite"]) else Path(details["suite"])
    try:
        suite = read_suite(path)
    except (OSError, SuiteError) as exc:
        raise ScoringError(f"run {row['run_id']}: cannot read its expectation suite {str(path)!r}: "
                           f"{exc}") from None
    same = suite_sha256(suite) == details.get("suite_sha256")
    if not same:
        logger.warning("suite %s was edited since run %s: its page shows the run's rules, the suite page "
                       "the file as it is now", path, row["run_id"])
    rule_meta = ({f"e{i + 1}": dict(e.get("meta") or {}) for i, e in enumerate(suite.get("expectations", []))}
                 if same else None)
    report = QualityReport.from_details(validation, row["rows_in"])
    page = build_data_docs(site, suite, report, run_name=row["run_id"],
                           run_time=dt.datetime.fromisoformat(row["started_at"]),
                           batch=validation.get("batch") or row["day"],
                           meta={"model": f"{row['model_name']} v{row['model_version']}", "day": row["day"],
                                 "status": row["status"], "rows_in": row["rows_in"],
                                 "rows_scored": row["rows_scored"], "rows_quarantined": row["rows_rejected"]},
                           rule_meta=rule_meta)
    logger.debug("Data Docs of run %s: %s", row["run_id"], page)
    return remote[row["model_name"]].public(page) if isinstance(where, StagePath) else str(page)


def build_docs(cfg: Config, *, day: dt.date | None = None, run_id: str | None = None) -> Path | str:
    """Build the Data Docs page of one run from the ledger (``scoring docs``); returns its path (its URI
    when the site is on an object store).

    Args:
        cfg: the configuration.
        day: the latest run of the configured model on this day that recorded a validation.
        run_id: this run instead. With neither, the model's latest run that recorded a validation.
    """
    rows = docs_rows(cfg, day=day, run_ids=[run_id] if run_id else None)
    page = render_docs(cfg, rows)[0]
    return page if is_uri(page) else Path(page)
