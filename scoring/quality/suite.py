"""Expectation suites: one Great Expectations 1.x JSON file per model version, in ``schemas/``.

A starting suite is generated from the model's registered feature schema and training profile (the
reference statistics kept in its metadata) when the version is registered; users edit it afterwards, and
the run compiles whatever the file says. The JSON is GX's own ``ExpectationSuite.to_json_dict()`` form:
``gx.ExpectationSuite(**json.load(f))`` loads it (tests check that).

Severity (GX's per-expectation ``severity`` field) decides what a failure does:

- row-level rules (not null, between, in set, unique, type): ``critical`` rows are quarantined and not
  scored; ``warning``/``info`` rows are scored and only counted (log, ledger, Data Docs).
- batch-level rules (row count, share of non-null values, required columns) and row-level rules with an
  explicit ``mostly``: ``critical`` fails the run (nothing is published), ``warning``/``info`` logs it.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scoring.errors import ScoringError
from scoring.models.reference import MISSING, OTHER
from scoring.storage.objects import is_uri, location
from scoring.storage.stagefs import StagePath

if TYPE_CHECKING:
    from scoring.config import Config
    from scoring.models.store import ModelVersion

logger = logging.getLogger(__name__)

# GX type names accepted for numeric features (what GX's pandas engine reports for these dtypes).
NUMERIC_TYPE_LIST = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64",
                     "Int64Dtype", "Float64Dtype"]
STRING_TYPE = "str"  # pandas 3 string columns (GX's OfType check; InTypeList rejects them)
BOOLEAN_TYPE = "bool"


class SuiteError(ScoringError):
    """An expectation suite is missing, unreadable, or uses something the gate cannot run."""


def suite_path(suites_dir: Path | str, model: str, version: int) -> Path | StagePath:
    """Where the suite of one model version lives: ``<suites_dir>/<model>/v<version>.json``; on an object
    store (``suites_dir`` an ``s3://`` URI, by default ``<model.store>/.suites``) a StagePath, so every
    host reads the suite the first one generated."""
    if is_uri(suites_dir):
        return location(suites_dir, "validation.suites_dir") / model / f"v{version}.json"
    return Path(suites_dir) / model / f"v{version}.json"


def suite_name(model: str, version: int) -> str:
    return f"{model}_v{version}"


def _exp(kind: str, severity: str = "critical", meta: dict[str, Any] | None = None, **kwargs: Any) -> dict:
    return {"type": kind, "kwargs": {k: v for k, v in kwargs.items() if v is not None}, "meta": meta or {},
            "severity": severity}


def _round(value: float, up: bool, integer: bool) -> float | int:
    if integer:
        return int(math.ceil(value) if up else math.floor(value))
    return float(f"{value:.6g}")


def _range(ref: dict[str, Any], margin: float, integer: bool, rule: str = "quantile",
           domain: dict[str, float | None] | None = None) -> tuple[tuple[float | int, float | int], str] | None:
    """The generated ``[min_value, max_value]`` of a numeric input and the sentence saying where it comes from.

    ``quantile``: the training 1st..99th percentiles (``q01``/``q99`` of the reference; robust to the
    sentinels and unit mix-ups a training set contains, which the min/max are not) widened by ``margin``
    times that span on each side, floored at 0 when the 1st percentile is not negative; then each bound
    configured in ``domain`` (``{"min", "max"}``, ``training.numeric``) replaces the generated one.
    ``minmax`` (the earlier rule, and the fallback for a reference without percentiles): the training
    min..max widened by ``margin`` spans, floored at 0 when training had no negative value; no domain.
    """
    if rule == "quantile" and "q01" in ref and "q99" in ref:
        low, high, what = float(ref["q01"]), float(ref["q99"]), "training 1st..99th percentiles"
    elif "min" in ref and "max" in ref:
        low, high, what = float(ref["min"]), float(ref["max"]), "training range"
        domain = None if rule == "minmax" else domain
    else:
        return None
    pad = margin * (high - low) if high > low else margin * max(abs(high), 1.0)
    lo, hi = low - pad, high + pad
    if low >= 0:
        lo = max(lo, 0.0)  # a column (nearly) never negative in training stays non-negative
    bounds = [_round(lo, False, integer), _round(hi, True, integer)]
    why = f"{what} {low:.6g} .. {high:.6g} widened by {margin:g} x its span"
    fixed = [(i, key) for i, key in enumerate(("min", "max")) if (domain or {}).get(key) is not None]
    for i, key in fixed:
        bounds[i] = _round(float(domain[key]), i == 1, integer)  # type: ignore[index]
    if fixed:
        why += "; " + " and ".join(key for _, key in fixed) + " from the configured domain (training.numeric)"
    return (bounds[0], bounds[1]), why


def _missing_share(ref: dict[str, Any]) -> float | None:
    """Share of missing values in training, or None when the profile cannot tell."""
    if "missing" in ref:
        return float(ref["missing"])
    shares = ref.get("shares", {})
    if isinstance(shares, dict):
        if MISSING in shares:
            return float(shares[MISSING])
        if OTHER not in shares:
            return 0.0
    return None


# A feature the model can impute still fails the day (critical) when its null share exceeds training's by more
# than this many points: a day whose key feature is all NULL is meaningless scores, not a warning. The rule's
# min_value in the generated suite is the setting (edit it, or its severity, per feature).
NULL_FLOOD_MARGIN = 0.5


def null_allowance(share: float) -> float:
    """Largest share of nulls a run may have when training had ``share``: twice it, and at least +10 points."""
    return min(1.0, max(2 * share, share + 0.10))


def _known_levels(signature: dict[str, Any]) -> dict[str, tuple[list[Any], str]]:
    """Inputs whose unseen levels the model cannot score -> (the levels it knows, why the rule is critical)."""
    out: dict[str, tuple[list[Any], str]] = {}
    for inp in signature.get("inputs", []):
        levels = inp.get("levels")
        if levels is None:
            continue
        if inp.get("unknown_levels") == "error":
            out[inp["name"]] = (sorted(levels, key=str), "the model's encoder raises on a level it did not see "
                                "in training (handle_unknown='error'): such rows are quarantined before scoring")
        elif inp.get("dtype") == "category":
            out[inp["name"]] = (sorted(levels, key=str), "the model reads this column as a pandas category with "
                                "the training levels: an unseen level has no code, so the row is quarantined")
    return out


def generate_suite(mv: ModelVersion, key_column: str, margin: float = 3.0, rule: str = "quantile",
                   domain: dict[str, dict[str, float | None]] | None = None) -> dict[str, Any]:
    """A starting suite for ``mv`` from its feature schema and training profile.

    Args:
        mv: the registered model version (its metadata has ``features`` and ``reference``).
        key_column: the source's key column: not null and unique within a run's interval.
        margin: numeric ranges are the training 1st..99th percentiles (``rule="quantile"``) or min..max
            (``"minmax"``) widened by ``margin`` times that span on each side (floored at 0 when the low end
            is not negative). Wide on purpose: normal days exceed the training extremes of heavy-tailed
            columns; the rule is there to catch unit mix-ups, sentinels and impossible signs, not tails.
            Percentiles, not min/max, because the training data holds the sentinels too (an age of 999 in
            0.2% of rows is the training max, and a min/max rule would allow it).
        rule: ``"quantile"`` (default) or ``"minmax"``; see ``_range``.
        domain: feature -> ``{"min", "max"}`` valid range (``training.numeric``); a bound given here replaces
            the generated one (``quantile`` rule only).

    Returns:
        The suite as GX 1.x JSON (a dict).
    """
    refs = (mv.meta.get("reference") or {}).get("features", {})
    features = [f for f in mv.features if f["name"] != key_column]
    signature = mv.meta.get("signature") or {}
    known = _known_levels(signature)
    # Versions registered before signatures say nothing about missing values: their rules stay critical.
    accepts_missing = {i["name"]: i.get("nullable_why") or "declared nullable"
                       for i in signature.get("inputs", []) if i.get("nullable")}
    exps = [
        _exp("expect_table_columns_to_match_set", column_set=[key_column, *(f["name"] for f in features)],
             exact_match=False, meta={"why": "the model's input columns and the key; extra columns are ignored"}),
        _exp("expect_table_row_count_to_be_between", "warning", min_value=1,
             meta={"why": "an empty interval is logged; make it critical to fail empty days"}),
        _exp("expect_column_values_to_not_be_null", column=key_column, meta={"why": "key"}),
        _exp("expect_column_values_to_be_unique", column=key_column, meta={"why": "one prediction per key"}),
    ]
    for feat in features:
        name, kind = feat["name"], feat["type"]
        ref = refs.get(name, {})
        if kind in ("integer", "float"):
            exps.append(_exp("expect_column_values_to_be_in_type_list", column=name, type_list=NUMERIC_TYPE_LIST,
                             meta={"why": f"trained as {kind}"}))
        elif kind == "string":
            exps.append(_exp("expect_column_values_to_be_of_type", column=name, type_=STRING_TYPE,
                             meta={"why": "trained as string"}))
        elif kind == "boolean":
            exps.append(_exp("expect_column_values_to_be_of_type", column=name, type_=BOOLEAN_TYPE,
                             meta={"why": "trained as boolean"}))
        missing = _missing_share(ref)
        takes_null = accepts_missing.get(name)
        severity = "warning" if takes_null else "critical"
        why_null = f"; warning, not critical: the model takes a missing value here ({takes_null})" if takes_null else ""
        if missing == 0.0:
            exps.append(_exp("expect_column_values_to_not_be_null", severity, column=name,
                             meta={"why": "no missing values in training" + why_null}))
        elif missing is not None:
            allowed = null_allowance(missing)
            if allowed < 1.0:
                exps.append(_exp("expect_column_proportion_of_non_null_values_to_be_between", severity, column=name,
                                 min_value=round(1 - allowed, 4),
                                 meta={"why": f"{missing:.2%} missing in training" + why_null}))
        if takes_null and missing is not None and missing + NULL_FLOOD_MARGIN < 1.0:
            exps.append(_exp("expect_column_proportion_of_non_null_values_to_be_between", "critical", column=name,
                             min_value=round(1 - missing - NULL_FLOOD_MARGIN, 4),
                             meta={"why": f"null flood: {missing:.2%} missing in training; more than "
                                          f"{missing + NULL_FLOOD_MARGIN:.0%} missing fails the day even though "
                                          "the model imputes it"}))
        if kind in ("integer", "float"):
            generated = _range(ref, margin, kind == "integer", rule, (domain or {}).get(name))
            if generated:
                (low, high), why = generated
                exps.append(_exp("expect_column_values_to_be_between", column=name, min_value=low,
                                 max_value=high, meta={"why": why}))
        if name in known:
            exps.append(_exp("expect_column_values_to_be_in_set", column=name, value_set=known[name][0],
                             meta={"why": known[name][1]}))
        elif kind == "string" and ref.get("levels"):
            exps.append(_exp("expect_column_values_to_be_in_set", "warning", column=name,
                             value_set=sorted(ref["levels"]),
                             meta={"why": "levels seen in training; unseen levels are scored and counted "
                                          "(make it critical to quarantine them)"}))
    return {
        "name": suite_name(mv.name, mv.version),
        "id": None,
        "expectations": exps,
        "meta": {"great_expectations_version": package_version("great_expectations"),
                 "scoring": {"model": mv.name, "version": mv.version, "key_column": key_column,
                             "generated_from": "training profile in the model metadata",
                             "range_rule": rule, "range_margin": margin}},
        "notes": "Generated by `scoring models register`; edit freely. severity critical: failing rows are "
                 "quarantined (row rules) or the run fails (batch rules, rules with mostly); warning: counted only.",
    }


def write_suite(path: Path | StagePath, suite: dict[str, Any]) -> Path | StagePath:
    """Write ``suite`` as indented JSON, atomically (on an object store: one whole-object write)."""
    if isinstance(path, StagePath):
        path.write_bytes((json.dumps(suite, indent=2) + "\n").encode())
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        json.dump(suite, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_suite(path: Path | StagePath) -> dict[str, Any]:
    """Read a suite file; SuiteError names the file when it is not a JSON object with expectations."""
    try:
        suite = json.loads(path.read_text() if isinstance(path, StagePath) else Path(path).read_text())
    except FileNotFoundError:
        raise SuiteError(f"expectation suite {str(path)!r} not found") from None
    except (OSError, ValueError) as exc:
        raise SuiteError(f"expectation suite {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise SuiteError(f"expectation suite {str(path)!r} has no 'expectations' list")
    return suite


def write_generated_suite(suites_dir: Path, mv: ModelVersion, key_column: str, margin: float = 3.0,
                          overwrite: bool = False, rule: str = "quantile",
                          domain: dict[str, dict[str, float | None]] | None = None) -> Path:
    """Generate and write the starting suite of ``mv``; an existing file is kept unless ``overwrite``."""
    path = suite_path(suites_dir, mv.name, mv.version)
    if path.exists() and not overwrite:
        logger.info("keeping the existing expectation suite %s", path)
        return path
    write_suite(path, generate_suite(mv, key_column, margin, rule, domain))
    logger.info("wrote expectation suite %s", path)
    return path


def range_options(cfg: Config) -> dict[str, Any]:
    """``margin``, ``rule`` and ``domain`` of the generated range rules, from the configuration."""
    return {"margin": cfg.validation.range_margin, "rule": cfg.validation.range_rule,
            "domain": dict(cfg.training.numeric) if cfg.training else None}


def write_version_suite(cfg: Config, mv: ModelVersion, overwrite: bool = False) -> Path:
    """``write_generated_suite`` with the configured suites folder, key column and range rule.

    What ``scoring train`` and ``scoring models register``/``suite`` call once a version exists.

    Returns:
        The suite's path, ``<validation.suites_dir>/<model>/v<version>.json``; an existing file is kept
        unless ``overwrite``.
    """
    return write_generated_suite(cfg.validation.suites_dir, mv, cfg.source.key_column, overwrite=overwrite,
                                 **range_options(cfg))


def load_suite(suites_dir: Path, mv: ModelVersion, key_column: str, *, margin: float = 3.0,
               require: bool = False, rule: str = "quantile",
               domain: dict[str, dict[str, float | None]] | None = None) -> tuple[Path, dict[str, Any], bool]:
    """The suite of ``mv``: read from its file, or generated (and written) when the file is missing.

    Returns:
        (path, suite, generated).

    Raises:
        SuiteError: the file is missing and ``require`` is set, or the file is unreadable.
    """
    path = suite_path(suites_dir, mv.name, mv.version)
    if path.exists():
        return path, read_suite(path), False
    if require:
        raise SuiteError(f"no expectation suite for model {mv.name} v{mv.version}: {str(path)!r} is missing "
                         f"(write it with `scoring models suite {mv.name} --version {mv.version}`)")
    logger.warning("no expectation suite for %s v%s: generating %s from the registered training profile",
                   mv.name, mv.version, path)
    write_suite(path, generate_suite(mv, key_column, margin, rule, domain))
    return path, read_suite(path), True


KEY_RULES = ("expect_column_values_to_not_be_null", "expect_column_values_to_be_unique")


def rekeyed(suite: dict[str, Any], configured_key: str, key_column: str) -> dict[str, Any]:
    """A copy of ``suite`` for a job whose key is ``key_column`` instead of the configured key.

    The key rules (not null, unique) on ``configured_key`` move to ``key_column``, and the column set the
    table must have names ``key_column`` for it; every other rule is kept as it is. The copy lives for that
    job only: the version's suite file, which the daily runs and other jobs read, is never changed.
    """
    if key_column == configured_key:
        return suite
    out = copy.deepcopy(suite)
    for exp in out.get("expectations", []):
        kwargs = exp.get("kwargs", {})
        if exp.get("type") in KEY_RULES and kwargs.get("column") == configured_key:
            kwargs["column"] = key_column
        elif exp.get("type") == "expect_table_columns_to_match_set" and configured_key in kwargs.get("column_set", []):
            kwargs["column_set"] = list(dict.fromkeys(key_column if c == configured_key else c
                                                      for c in kwargs["column_set"]))
    return out
