"""Whole-interval verdict: every rule's outcome from the merged chunk counts, batch rules, error threshold.

Results follow GX's result dictionaries (element_count, unexpected_count, unexpected_percent,
missing_count, partial_unexpected_list, observed_value) so the same outcome feeds the ledger and GX's
Data Docs renderer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scoring.quality.compile import Rule


@dataclass
class Outcome:
    """One rule evaluated on the whole interval."""

    rule: Rule
    success: bool
    result: dict[str, Any]
    blocking: bool = False  # this failure fails the run


@dataclass
class QualityReport:
    """The verdict of a run's data quality checks."""

    rows_in: int
    rows_quarantined: int
    error_threshold: float
    outcomes: list[Outcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def quarantined_share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    @property
    def success(self) -> bool:
        return not self.failures

    def details(self) -> dict[str, Any]:
        """A compact summary for the run ledger: the rules that found something, failures and warnings."""
        rules = [{"id": o.rule.id, "type": o.rule.type, "column": o.rule.column, "severity": o.rule.severity,
                  "success": o.success, **{k: o.result[k] for k in ("unexpected_count", "observed_value")
                                           if k in o.result}}
                 for o in self.outcomes if not o.success or o.result.get("unexpected_count")]
        return {"success": self.success, "rows_quarantined": self.rows_quarantined,
                "quarantined_share": round(self.quarantined_share, 6), "error_threshold": self.error_threshold,
                "failures": self.failures, "warnings": self.warnings, "rules": rules}

    def outcome_records(self) -> list[dict[str, Any]]:
        """Every rule with its result, compact and JSON-able: what Data Docs render, kept in the ledger
        (``runs.details.validation.outcomes``) so the pages can be built after the run, in another process.

        Returns:
            One dict per outcome, in reporting order: ``{"rule": {id, type, kwargs, severity[, source]},
            "success": bool[, "blocking": true], "result": {...}}``; a row rule's result keeps only its
            counts and sample (``unexpected_count``, ``missing_count``, ``partial_unexpected_list``, each
            left out when 0 or empty; the percentages follow from them), a batch rule's its
            ``observed_value``. The rule is stored whole (not only its id) because a suite edited after
            the run renumbers its expectations.
        """
        records = []
        for o in self.outcomes:
            rule: dict[str, Any] = {"id": o.rule.id, "type": o.rule.type, "kwargs": o.rule.kwargs,
                                    "severity": o.rule.severity}
            if o.rule.source != "suite":
                rule["source"] = o.rule.source
            if o.rule.row_level:
                result = {k: o.result[k] for k in ("unexpected_count", "missing_count", "partial_unexpected_list")
                          if o.result.get(k)}
            else:
                result = dict(o.result)
            records.append({"rule": rule, "success": o.success, **({"blocking": True} if o.blocking else {}),
                            "result": result})
        return records

    @classmethod
    def from_details(cls, validation: dict[str, Any], rows_in: int) -> QualityReport:
        """The report back from the ledger's ``details.validation`` (``details()`` plus ``outcomes``).

        Args:
            validation: the ledger's ``details.validation`` of one run.
            rows_in: the run's ``rows_in`` (every row rule's element count).

        Raises:
            KeyError: ``validation`` has no ``outcomes`` (a run recorded before they were kept).
        """
        report = cls(rows_in, validation["rows_quarantined"], validation["error_threshold"],
                     failures=list(validation.get("failures", [])), warnings=list(validation.get("warnings", [])))
        for item in validation["outcomes"]:
            r, kept = item["rule"], item["result"]
            rule = Rule(r["id"], r["type"], dict(r["kwargs"]), r["severity"], r.get("source", "suite"))
            result = (row_result(rows_in, kept.get("unexpected_count", 0), kept.get("missing_count", 0),
                                 list(kept.get("partial_unexpected_list", []))) if rule.row_level else dict(kept))
            report.outcomes.append(Outcome(rule, item["success"], result, item.get("blocking", False)))
        return report


def _within(value: float, kw: dict[str, Any]) -> bool:
    low, high = kw.get("min_value"), kw.get("max_value")
    if low is not None and (value <= low if kw.get("strict_min") else value < low):
        return False
    return not (high is not None and (value >= high if kw.get("strict_max") else value > high))


def _describe(rule: Rule) -> str:
    return f"{rule.type} on {rule.column!r}" if rule.column else rule.type


MAX_VALUE_CHARS = 100  # a value quoted in a message or the ledger (a 10 MB category would otherwise be copied)


def bounded(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """``value`` with text (and bytes) cut to ``limit`` characters, marked with how much was cut."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}… ({len(value) - limit} more characters)"
    return value


def row_result(rows: int, unexpected: int, missing: int, partial: list[Any]) -> dict[str, Any]:
    """GX's result dict of a row-level rule from its counts on ``rows`` rows (sample values bounded)."""
    partial = [bounded(v) for v in partial[:20]]
    nonmissing = rows - missing
    return {"element_count": rows, "unexpected_count": unexpected, "missing_count": missing,
            "missing_percent": 100 * missing / rows if rows else None,
            "unexpected_percent": 100 * unexpected / nonmissing if nonmissing else None,
            "unexpected_percent_total": 100 * unexpected / rows if rows else None,
            "unexpected_percent_nonmissing": 100 * unexpected / nonmissing if nonmissing else None,
            "partial_unexpected_list": partial}


def _row_outcome(rule: Rule, stats: dict[str, Any], rows: int) -> Outcome:
    unexpected = stats["unexpected"].get(rule.id, 0)
    missing = stats["missing"].get(rule.id, 0)
    nonmissing = rows - missing
    result = row_result(rows, unexpected, missing, stats["partial"].get(rule.id, []))
    if rule.mostly is None:
        return Outcome(rule, unexpected == 0, result)
    success = nonmissing == 0 or 1 - unexpected / nonmissing >= rule.mostly
    return Outcome(rule, success, result, blocking=not success and rule.severity == "critical")


def _batch_outcome(rule: Rule, stats: dict[str, Any], rows: int, source_columns: list[str]) -> Outcome:
    if rule.type == "expect_table_row_count_to_be_between":
        ok = _within(rows, rule.kwargs)
        return Outcome(rule, ok, {"observed_value": rows}, blocking=not ok and rule.severity == "critical")
    if rule.type == "expect_column_proportion_of_non_null_values_to_be_between":
        if not rows:
            return Outcome(rule, True, {"observed_value": None})
        share = (rows - stats["nulls"].get(rule.column, 0)) / rows
        ok = _within(share, rule.kwargs)
        return Outcome(rule, ok, {"observed_value": share}, blocking=not ok and rule.severity == "critical")
    # expect_table_columns_to_match_set: required columns were checked before scoring (SchemaError).
    return Outcome(rule, True, {"observed_value": source_columns})


def _message(outcome: Outcome, rows: int) -> str:
    rule, result = outcome.rule, outcome.result
    if "observed_value" in result:
        observed = result["observed_value"]
        shown = f"{observed:.4f}" if isinstance(observed, float) else observed
        bounds = {k: v for k, v in rule.kwargs.items() if k in ("min_value", "max_value") and v is not None}
        return f"{_describe(rule)}: observed {shown}, expected {bounds}"
    return (f"{_describe(rule)}: {result['unexpected_count']} of {rows} rows unexpected "
            f"(mostly {rule.mostly}); e.g. {result['partial_unexpected_list'][:3]}")


def evaluate(rules: list[Rule], stats: dict[str, Any], rows_in: int, rows_quarantined: int,
             error_threshold: float, source_columns: list[str]) -> QualityReport:
    """Evaluate ``rules`` on the merged chunk ``stats`` of the interval.

    Args:
        rules: the run's rules (its own first, then the suite's, in order).
        stats: ``gate.merge_stats`` of every chunk.
        rows_in: rows read for the interval.
        rows_quarantined: rows set aside by the row-level gate.
        error_threshold: the largest share of quarantined rows that still publishes.
        source_columns: the source's columns (observed value of the column-set rule).
    """
    report = QualityReport(rows_in, rows_quarantined, error_threshold)
    for rule in rules:
        outcome = (_row_outcome(rule, stats, rows_in) if rule.row_level
                   else _batch_outcome(rule, stats, rows_in, source_columns))
        report.outcomes.append(outcome)
        if outcome.blocking:
            report.failures.append(_message(outcome, rows_in))
        elif not outcome.success and (not rule.row_level or rule.mostly is not None):
            report.warnings.append(f"{rule.severity}: {_message(outcome, rows_in)}")
        elif rule.row_level and not rule.quarantines and outcome.result["unexpected_count"]:
            report.warnings.append(f"{rule.severity}: {_describe(rule)}: {outcome.result['unexpected_count']} "
                                   f"rows unexpected, scored anyway; e.g. "
                                   f"{outcome.result['partial_unexpected_list'][:3]}")
    if report.quarantined_share > error_threshold:
        top = sorted((o for o in report.outcomes if o.rule.quarantines and o.result.get("unexpected_count")),
                     key=lambda o: -o.result["unexpected_count"])[:3]
        causes = ", ".join(f"{_describe(o.rule)} ({o.result['unexpected_count']})" for o in top)
        report.failures.append(f"{rows_quarantined} of {rows_in} rows quarantined "
                               f"({report.quarantined_share:.1%}), above validation.error_threshold "
                               f"{error_threshold:.1%}; most frequent: {causes}")
    return report
