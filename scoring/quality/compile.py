"""Compile a GX suite (JSON) into plain rules the vectorized gate runs; no GX import.

Only the expectation types below are supported; anything else is a SuiteError naming it, so a rule a
user adds is never silently skipped. Their meaning follows GX's pandas engine: nulls (and float NaN) are
"missing" and skipped by every rule except not-null; +/-inf is a value (outside any finite range).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.quality.suite import SuiteError

ROW_TYPES = {
    "expect_column_values_to_not_be_null": {"column", "mostly"},
    "expect_column_values_to_be_between": {"column", "min_value", "max_value", "strict_min", "strict_max",
                                           "mostly"},
    "expect_column_values_to_be_in_set": {"column", "value_set", "mostly"},
    "expect_column_values_to_not_be_in_set": {"column", "value_set", "mostly"},
    "expect_column_values_to_be_unique": {"column", "mostly"},
    "expect_column_values_to_not_match_regex": {"column", "regex", "mostly"},
    "expect_column_values_to_be_of_type": {"column", "type_", "mostly"},
    "expect_column_values_to_be_in_type_list": {"column", "type_list", "mostly"},
}
BATCH_TYPES = {
    "expect_table_row_count_to_be_between": {"min_value", "max_value", "strict_min", "strict_max"},
    "expect_column_proportion_of_non_null_values_to_be_between": {"column", "min_value", "max_value",
                                                                  "strict_min", "strict_max"},
    "expect_table_columns_to_match_set": {"column_set", "exact_match"},
}
IGNORED_KWARGS = {"result_format", "catch_exceptions", "include_config", "batch_id"}
SEVERITIES = {"critical", "warning", "info"}
TYPE_RULES = {"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"}


@dataclass(frozen=True)
class Rule:
    """One expectation of the suite (or one the run adds, e.g. the interval), ready to evaluate."""

    id: str
    type: str
    kwargs: dict[str, Any]
    severity: str = "critical"
    source: str = "suite"  # suite | run

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")

    @property
    def row_level(self) -> bool:
        return self.type in ROW_TYPES

    @property
    def quarantines(self) -> bool:
        """Failing rows are set aside (not scored)."""
        return self.row_level and self.severity == "critical"

    @property
    def mostly(self) -> float | None:
        value = self.kwargs.get("mostly")
        return None if value is None else float(value)


@dataclass(frozen=True)
class CompiledSuite:
    """The rules of one suite: row-level (per chunk) and batch-level (on the whole interval)."""

    name: str
    rules: tuple[Rule, ...]
    types: dict[str, set[str]] = field(default_factory=dict)  # column -> accepted kinds
    required: tuple[str, ...] = ()

    @property
    def row_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.row_level)

    @property
    def batch_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if not r.row_level)

    def type_rule(self, column: str) -> Rule | None:
        return next((r for r in self.rules if r.type in TYPE_RULES and r.column == column), None)


_NUMERIC = re.compile(r"^(u?int|float|double|decimal|number)\d*(dtype)?$", re.IGNORECASE)


def kind_of(type_name: str) -> str:
    """The kind (numeric, string, boolean, temporal) a GX/pandas/numpy type name denotes."""
    name = str(type_name).strip()
    low = name.lower()
    if _NUMERIC.match(name) or low in ("int", "float", "integer", "real"):
        return "numeric"
    if low in ("str", "string", "object", "stringdtype", "unicode", "varchar", "text"):
        return "string"
    if low in ("bool", "boolean", "booldtype", "booleandtype"):
        return "boolean"
    if low.startswith(("datetime", "timestamp", "date")):
        return "temporal"
    raise SuiteError(f"type name {type_name!r} is not understood by the gate "
                     "(use e.g. float64, int64, str, bool, datetime64[ns])")


def _check_number(where: str, key: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise SuiteError(f"{where}: {key} must be a number or null, got {value!r}")


def compile_suite(suite: dict[str, Any], path: Path | str = "suite") -> CompiledSuite:
    """Compile ``suite`` (GX 1.x JSON); SuiteError names the file, the expectation and the problem."""
    rules: list[Rule] = []
    types: dict[str, set[str]] = {}
    required: list[str] = []
    for i, exp in enumerate(suite.get("expectations", [])):
        where = f"expectation suite {str(path)!r}, expectation {i + 1}"
        if not isinstance(exp, dict) or "type" not in exp:
            raise SuiteError(f"{where}: not an object with a 'type'")
        type_, kwargs = exp["type"], dict(exp.get("kwargs") or {})
        allowed = ROW_TYPES.get(type_, BATCH_TYPES.get(type_))
        if allowed is None:
            raise SuiteError(f"{where}: {type_!r} is not supported by the scoring gate; supported: "
                             f"{', '.join(sorted({*ROW_TYPES, *BATCH_TYPES}))}")
        unknown = set(kwargs) - allowed - IGNORED_KWARGS
        if unknown:
            raise SuiteError(f"{where} ({type_}): unsupported argument(s) {', '.join(sorted(unknown))}")
        for key in IGNORED_KWARGS:
            kwargs.pop(key, None)
        if "column" in allowed and not isinstance(kwargs.get("column"), str):
            raise SuiteError(f"{where} ({type_}): 'column' is required")
        severity = exp.get("severity", "critical")
        if severity not in SEVERITIES:
            raise SuiteError(f"{where} ({type_}): severity {severity!r} is not one of {sorted(SEVERITIES)}")
        for key in ("min_value", "max_value"):
            _check_number(f"{where} ({type_})", key, kwargs.get(key))
        mostly = kwargs.get("mostly")
        if mostly is not None and not (isinstance(mostly, int | float) and 0 <= mostly <= 1):
            raise SuiteError(f"{where} ({type_}): mostly must be between 0 and 1")
        if type_ in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
            if not isinstance(kwargs.get("value_set"), list):
                raise SuiteError(f"{where} ({type_}): value_set must be a list")
        if type_ == "expect_column_values_to_be_of_type":
            types[kwargs["column"]] = {kind_of(kwargs.get("type_", ""))}
        elif type_ == "expect_column_values_to_be_in_type_list":
            if not isinstance(kwargs.get("type_list"), list) or not kwargs["type_list"]:
                raise SuiteError(f"{where} ({type_}): type_list must be a non-empty list")
            types[kwargs["column"]] = {kind_of(t) for t in kwargs["type_list"]}
        elif type_ == "expect_table_columns_to_match_set":
            if not isinstance(kwargs.get("column_set"), list):
                raise SuiteError(f"{where} ({type_}): column_set must be a list")
            if kwargs.get("exact_match", True):
                raise SuiteError(f"{where} ({type_}): exact_match true is not supported (new source columns "
                                 "are ignored by policy); set it to false")
            required.extend(c for c in kwargs["column_set"] if c not in required)
        rules.append(Rule(f"e{i + 1}", type_, kwargs, severity))
    return CompiledSuite(str(suite.get("name") or Path(path).stem), tuple(rules), types, tuple(required))
