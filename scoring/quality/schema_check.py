"""The check of a source schema against a model's feature schema, under the schema-drift policy."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from scoring.errors import SchemaError
from scoring.models.signature import compatible, logical_type
from scoring.storage.sources.pg_numeric import SPECIAL_PREFIX

logger = logging.getLogger(__name__)


def check_schema(source: pa.Schema, features: list[dict[str, str]], key_column: str) -> list[str]:
    """Check the source columns against the model's features.

    Returns the columns to read (key first, then features). Raises SchemaError naming the first
    missing or retyped column; extra columns are logged and ignored.
    """
    if key_column not in source.names:
        raise SchemaError(f"key column {key_column!r} is missing from the source")
    found = {f.name: logical_type(f.type) for f in source}
    for feat in features:
        name, expected = feat["name"], feat["type"]
        if name not in found:
            raise SchemaError(f"required column {name!r} (type {expected}) is missing from the source")
        if not compatible(expected, found[name]):
            raise SchemaError(f"column {name!r} has type {found[name]}, the model expects {expected}")
    wanted = {key_column, *(f["name"] for f in features)}
    extra = [n for n in source.names if n not in wanted]
    if extra:
        logger.info("ignoring %d source columns not used by the model: %s", len(extra), ", ".join(extra))
    return [key_column, *(f["name"] for f in features if f["name"] != key_column)]


# --- schema-drift policy (data quality gate) -------------------------------------------------------------

KINDS = {"integer": "numeric", "float": "numeric", "string": "string", "boolean": "boolean",
         "timestamp": "temporal", "date": "temporal"}


@dataclass(frozen=True)
class SchemaPlan:
    """How a source's columns feed the model: what is read, what is cast row by row, what is ignored."""

    columns: list[str]  # key first, then the model's features
    casts: dict[str, str] = field(default_factory=dict)  # column -> "float64" | "string"
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _cast_for(expected: set[str], found: str) -> str | None:
    """The per-row cast that feeds a ``found`` column where ``expected`` kinds were trained, if one is safe."""
    if "numeric" in expected and found == "string":
        return "float64"  # unparseable values are quarantined row by row
    if "string" in expected and found in ("integer", "float", "boolean"):
        return "string"
    return None


def plan_schema(source: pa.Schema, features: list[dict[str, str]], key_column: str, *,
                expected: dict[str, set[str]] | None = None, required: tuple[str, ...] = (),
                policy: str = "block", timestamp_column: str | None = None,
                text_columns: frozenset[str] = frozenset()) -> SchemaPlan:
    """Check the source columns against the model's features under the schema-drift policy.

    Args:
        source: the source relation's Arrow schema.
        features: the model's feature schema (name and logical type).
        key_column: the key column.
        expected: kinds accepted per column (numeric, string, boolean, temporal) from the suite's type
            expectations; a feature without one falls back to its logical type in ``features``.
        required: more columns the suite requires.
        policy: ``block`` stops on any retyped column; ``warn`` casts a castable one (string to number,
            number to string) row by row and quarantines values that do not parse.
        timestamp_column: read but not a feature (not reported as ignored).
        text_columns: columns the source can only deliver as text (a CSV's): one the model reads as a number is
            parsed row by row under any policy, without a drift warning.

    Returns:
        The plan. Raises SchemaError naming the column, the expected and the found type when a required
        column is missing or cannot be cast safely; columns the model does not use are logged and ignored.
    """
    found = {f.name: logical_type(f.type) for f in source}
    names = [f["name"] for f in features if f["name"] != key_column]
    wanted = [key_column, *names, *(c for c in required if c not in names and c != key_column)]
    if not any(c in found for c in wanted):
        raise SchemaError(f"the source has none of the model's columns (key {key_column!r} and "
                          f"{len(names)} features such as {', '.join(map(repr, names[:3]))}); "
                          f"it has {', '.join(map(repr, source.names)) or 'no columns'}")
    if key_column not in found:
        raise SchemaError(f"key column {key_column!r} is missing from the source")
    types = {f["name"]: f["type"] for f in features}
    missing = [c for c in wanted if c not in found]
    if missing:
        listed = ", ".join(f"{c!r} (type {types.get(c, 'any')})" for c in missing)
        label = "required column" if len(missing) == 1 else "required columns"
        raise SchemaError(f"{label} {listed} {'is' if len(missing) == 1 else 'are'} missing from the source")
    plan = SchemaPlan([key_column, *names])
    for name in names:
        kinds = set((expected or {}).get(name) or {KINDS.get(types[name], types[name])})
        have = found[name]
        if have == "null" or KINDS.get(have, have) in kinds:
            continue
        want = types.get(name) or "/".join(sorted(kinds))
        cast = _cast_for(kinds, have)
        if cast is None:
            raise SchemaError(f"column {name!r} has type {have}, the model expects {want}, "
                              f"and {have} cannot be cast to {want} safely")
        if cast == "float64" and name in text_columns:
            plan.casts[name] = cast  # a CSV's text: parsed row by row, values that do not parse quarantined
            continue
        if policy != "warn":
            raise SchemaError(f"column {name!r} has type {have}, the model expects {want} "
                              f"(validation.schema_drift is block; 'warn' casts it row by row)")
        plan.casts[name] = cast
        plan.warnings.append(f"column {name!r} has type {have}, the model expects {want}: cast row by row, "
                             "values that do not parse are quarantined")
    skip = {*wanted, *([timestamp_column] if timestamp_column else [])}
    plan.ignored.extend(n for n in source.names if n not in skip and not n.startswith(SPECIAL_PREFIX))
    if plan.ignored:
        logger.info("ignoring %d source columns not used by the model: %s", len(plan.ignored),
                    ", ".join(plan.ignored))
    for warning in plan.warnings:
        logger.warning("schema drift: %s", warning)
    return plan
