"""The YAML configuration, validated with pydantic. Relative paths resolve against the file's folder."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from scoring.dates import zone_info
from scoring.errors import ConfigError, ScoringError
from scoring.sqlident import validate_column_name, validate_identifier

DEFAULT_CONFIG = "scoring.yaml"
# The predictions table's own columns (scoring/storage/results/tables.py, checked equal by a test): a
# passthrough column may not take one of these names.
PREDICTION_COLUMNS = ("source_key", "score", "label", "predicted_class", "probabilities", "model_name",
                      "model_version", "run_id", "day", "scored_at")
CONFIG_ENV = "SCORING_CONFIG"


STAGING_SCHEMES = ("s3",)  # object stores results.staging_dir may name (pyarrow filesystems)
STAGING_URI_OPTIONS = ("region", "endpoint_override", "scheme")  # non-secret options a staging URI may carry
# Object stores the model store, expectation suites and Data Docs may live on (pyarrow filesystems; only s3://
# is tested, gs:// and abfs:// go through pyarrow's GcsFileSystem / AzureFileSystem).
STORE_SCHEMES = ("s3", "gs", "abfs")


def parse_location(value: str | Path, key: str, schemes: tuple[str, ...] = STAGING_SCHEMES) -> str | Path:
    """A folder setting as written in YAML: a local path (``file://`` stripped) or an object-store URI
    (``s3://bucket/prefix``; ``gs://``/``abfs://`` where ``schemes`` allows them).

    Args:
        value: the setting's value.
        key: the setting's name, for the error message (e.g. ``results.staging_dir``).
        schemes: the URI schemes accepted.

    Raises:
        ConfigError: an unknown scheme, no bucket, or credentials (user info, access/secret keys) in the URI.
    """
    if isinstance(value, Path):
        return value
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return Path(parts.path)
    if not scheme or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return Path(value)
    if scheme not in schemes:
        raise ConfigError(f"{key} {value!r}: unsupported scheme {scheme!r}; use a local path, "
                          f"file:///... or {' / '.join(s + '://bucket/prefix' for s in schemes)}")
    secret = [k for k, _ in parse_qsl(parts.query) if k not in STAGING_URI_OPTIONS]
    if (scheme == "s3" and "@" in parts.netloc) or secret:
        raise ConfigError(f"{key}: credentials or unknown options ({', '.join(secret) or 'user info'})"
                          " do not belong in the config file; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                          "results.staging_connection_id")
    if not parts.netloc:
        raise ConfigError(f"{key} {value!r}: name a bucket, {scheme}://bucket/prefix")
    return value


def parse_staging_dir(value: str | Path) -> str | Path:
    """``results.staging_dir`` as written in YAML: a local path (``file://`` stripped) or an ``s3://`` URI.

    Raises:
        ConfigError: an unknown scheme, or credentials (user info, access/secret keys) in the URI.
    """
    return parse_location(value, "results.staging_dir")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _table_name(value: str | None) -> str | None:
    """A ``table`` or ``schema.table`` setting, each part a plain identifier (None passes)."""
    if value is not None:
        for part in value.split("."):
            validate_identifier(part, "table name")
    return value


_Select = TypeVar("_Select", "SourceConfig", "LabelsConfig")


def _one_database_select(cfg: _Select) -> _Select:
    """A database read (source, labels) names exactly one of table/query and what its kind needs."""
    if (cfg.table is None) == (cfg.query is None):
        raise ValueError("give exactly one of 'table' or 'query'")
    if cfg.kind == "duckdb" and cfg.path is None:
        raise ValueError("kind duckdb needs 'path'")
    if cfg.kind == "postgres" and cfg.url is None and cfg.connection_id is None:
        raise ValueError("kind postgres needs 'url' (or 'connection_id' under Airflow)")
    return cfg


class SourceConfig(_Strict):
    """Where the rows to score come from."""

    kind: Literal["duckdb", "postgres"] = "duckdb"
    path: Path | None = Field(None, description="DuckDB database file (kind duckdb)")
    url: str | None = Field(None, description="postgresql:// URL (kind postgres)")
    table: str | None = Field(None, description="table or schema.table")
    query: str | None = Field(None, description="a SELECT used instead of a table")
    timestamp_column: str
    key_column: str
    connection_id: str | None = Field(None, description="Airflow Connection id used under Airflow")
    connect_timeout_s: float = Field(30.0, ge=0, description="kind postgres: keep retrying a refused or "
                                     "timed-out connection this long")
    timestamp_timezone: str | None = Field(None, description="IANA zone of naive (no time zone) timestamps "
                                           "in the source; default: schedule.timezone")

    @field_validator("timestamp_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else _check_zone(value)

    @field_validator("timestamp_column", "key_column")
    @classmethod
    def _ident(cls, value: str) -> str:
        return validate_column_name(value, "column name")

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        return _table_name(value)

    @model_validator(mode="after")
    def _one_of(self) -> SourceConfig:
        return _one_database_select(self)


class ModelConfig(_Strict):
    """Which model scores, and how scores become labels."""

    store: Path | str = Field(Path("models"), description="a local folder, or s3://bucket/prefix (gs://, abfs:// "
                              "untested) shared by every host: credentials from the environment or "
                              "store_connection_id, never here")
    store_connection_id: str | None = Field(None, description="under Airflow, the Connection (type aws) of the "
                                            "model store, suites and Data Docs on s3://; default: "
                                            "results.staging_connection_id")
    name: str
    alias: str = "champion"
    version: int | None = Field(None, description="pin a version instead of following the alias")
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    challengers: list[str] = Field(default_factory=list, description="aliases or version numbers shadow-scored "
                                   "with every run (published apart, marked shadow)")

    @field_validator("name", "alias")
    @classmethod
    def _ident(cls, value: str) -> str:
        return validate_identifier(value, "model name or alias")

    @field_validator("store", mode="before")
    @classmethod
    def _store_uri(cls, value: object) -> object:
        return parse_location(value, "model.store", STORE_SCHEMES) if isinstance(value, str | Path) else value

    @field_validator("challengers", mode="before")
    @classmethod
    def _challengers(cls, value: object) -> list[str]:
        if not isinstance(value, list):
            raise ValueError("give a list of aliases or version numbers")
        out = [str(v) for v in value]
        for item in out:
            if not item.isdigit():
                validate_identifier(item, "challenger alias")
        if len(set(out)) != len(out):
            raise ValueError("a challenger is listed twice")
        return out


class PromotionConfig(_Strict):
    """The promotion gate of ``scoring models promote`` / ``check`` (see README "Model CI/CD")."""

    metric: str | None = Field(None, description="compared with the champion's on the window (default: roc_auc "
                               "for binary, log_loss for multiclass, rmse for regression)")
    tolerance: float = Field(0.0, ge=0.0, description="how much worse than the champion the candidate may be")
    window_days: int = Field(7, ge=1, le=366, description="evaluation window: the last N business days before "
                             "today (schedule.timezone)")
    shadow_days: int = Field(0, ge=0, description="days the candidate must have been shadow-scored without "
                             "failing (0: not required)")
    label_column: str | None = Field(None, description="source column with the outcome (default: "
                                     "training.label_column)")
    max_quarantine_excess: float = Field(0.01, ge=0.0, le=1.0, description="the candidate's quarantine rate on "
                                         "its shadow days may exceed the champion's on the same runs by at most "
                                         "this (a share of rows)")


class ResultsConfig(_Strict):
    """Where predictions, the run ledger and staged chunks go."""

    kind: Literal["duckdb", "postgres"] = "duckdb"
    path: Path | None = Field(None, description="DuckDB results file (kind duckdb)")
    url: str | None = None
    db_schema: str = Field("scoring", alias="schema", description="schema for kind postgres")
    table: str = "predictions"
    staging_dir: Path | str = Field(Path("results/staging"), description="where chunks are staged: a local "
                                    "path, file:///..., or s3://bucket/prefix (credentials from the environment "
                                    "or staging_connection_id, never here)")
    connection_id: str | None = None
    staging_connection_id: str | None = Field(None, description="Airflow Connection (type aws) with the "
                                              "object store's credentials and endpoint_url")
    connect_timeout_s: float = Field(30.0, ge=0, description="kind postgres: keep retrying a refused or "
                                     "timed-out connection this long")
    passthrough: list[str] = Field(default_factory=list, description="source columns copied into each "
                                   "prediction row, with their source types")
    lock_timeout_s: float = Field(120.0, ge=0, description="wait this long for the results lock (DuckDB file "
                                  "lock; PostgreSQL lock_timeout of DDL and publish), then fail naming the holder")
    heartbeat_timeout_s: float = Field(1800.0, gt=0, description="a running attempt of another host silent this "
                                       "long is marked interrupted")
    reader_export: bool = Field(True, description="kind duckdb: export each published partition as Parquet with "
                                "a read-only catalog of views, so readers never hold the results file")
    export_dir: Path | None = Field(None, description="kind duckdb: where (default <results file>_export/)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    _staging_options: dict[str, str] = PrivateAttr(default_factory=dict)  # set from a connection, never YAML

    @field_validator("staging_dir", mode="before")
    @classmethod
    def _staging_uri(cls, value: object) -> object:
        return parse_staging_dir(value) if isinstance(value, str | Path) else value

    @property
    def staging_options(self) -> dict[str, str]:
        """Object-store options from ``staging_connection_id`` (credentials included): in memory only."""
        return self._staging_options

    @field_validator("table", "db_schema")
    @classmethod
    def _ident(cls, value: str) -> str:
        return validate_identifier(value, "results table or schema")

    @field_validator("passthrough")
    @classmethod
    def _passthrough(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in value:
            validate_column_name(name, "passthrough column name")
            # Case-insensitive: DuckDB column names are, and a BI tool would not tell Score from score.
            if name.lower() in PREDICTION_COLUMNS:
                raise ValueError(f"{name!r} is a column of the predictions table; pick another source column")
            if name.lower() in seen:
                raise ValueError(f"{name!r} is listed twice")
            seen.add(name.lower())
        return value

    @model_validator(mode="after")
    def _where(self) -> ResultsConfig:
        if self.kind == "duckdb" and self.path is None:
            raise ValueError("kind duckdb needs 'path'")
        if self.kind == "postgres" and self.url is None and self.connection_id is None:
            raise ValueError("kind postgres needs 'url' (or 'connection_id' under Airflow)")
        return self


class JobsConfig(_Strict):
    """What on-demand jobs may read and where they may write (docs/security.md)."""

    allowed_tables: list[str] | None = Field(None, description="tables/views a job --query may read (table or "
                                             "schema.table); default: source.table, or the tables source.query "
                                             "reads")
    output_dir: Path | None = Field(None, description="the only folder a job --output may write into (a "
                                    "relative --output lands here); default: <results folder>/job_outputs")
    postgres_url: str | None = Field(None, description="PostgreSQL source: the connection job queries run as; its "
                                     "role may only SELECT jobs.allowed_tables (checked per job; docs/security.md)")
    statement_timeout_s: float = Field(300.0, gt=0, le=86_400, description="PostgreSQL source: a job query's "
                                       "statement_timeout and lock_timeout")

    @field_validator("allowed_tables")
    @classmethod
    def _tables(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            for part in name.split("."):
                validate_identifier(part, "jobs.allowed_tables entry")
        return value


class OutputConfig(_Strict):
    """What each prediction row carries besides the score."""

    probabilities: bool = Field(False, description="write every class probability as JSON in `probabilities` "
                                "(classifiers; NULL for regressors)")


class ChunkingConfig(_Strict):
    """Chunk size: a memory budget, or a fixed row count (the smaller wins when both are set)."""

    memory_budget_mib: int | None = Field(512, gt=0)
    rows_per_chunk: int | None = Field(None, gt=0)


class TrainingConfig(_Strict):
    """How `scoring train` fits a model on labelled rows of the source."""

    label_column: str
    start: dt.date | None = None
    end: dt.date | None = None
    numeric: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="numeric feature -> {min, max} valid range (outside becomes missing)"
    )
    categorical: list[str] = Field(default_factory=list)
    estimator: Literal["hist_gradient_boosting", "logistic_regression"] = "hist_gradient_boosting"
    random_state: int = 0


class FeatureDrift(_Strict):
    """Fixed PSI thresholds of one feature (they replace the calibrated ones)."""

    warn: float = Field(gt=0)
    alert: float = Field(gt=0)


class DriftConfig(_Strict):
    """How drift (PSI) is judged; see README "Drift"."""

    method: Literal["calibrated", "fixed"] = Field(
        "calibrated", description="calibrated: each feature against its own training days' PSI (mean + k sd, "
        "never below psi_warn/psi_alert); fixed: psi_warn/psi_alert for every feature")
    warn_sd: float = Field(2.0, gt=0, description="calibrated warn threshold: mean + warn_sd x sd of training days")
    alert_sd: float = Field(3.0, gt=0, description="calibrated alert threshold: mean + alert_sd x sd")
    window_days: int = Field(1, ge=1, le=60, description="compare the last N business days pooled (7: week "
                             "against week), the run's day included")
    exclude: list[str] = Field(default_factory=list, description="features never judged (PSI still recorded)")
    features: dict[str, FeatureDrift] = Field(default_factory=dict, description="fixed thresholds per feature")


class ValidationConfig(_Strict):
    """Data quality gate settings."""

    error_threshold: float = Field(0.05, ge=0.0, le=1.0, description="max fraction of quarantined rows")
    schema_drift: Literal["warn", "block"] = "block"
    duplicate_keys: Literal["quarantine", "keep_latest"] = Field(
        "quarantine", description="a key delivered more than once in a run's rows (an upstream replay): "
        "quarantine every row of it, or keep_latest: score the row with the latest source.timestamp_column and "
        "quarantine the others (a tie on the latest timestamp quarantines them all); see docs/types-and-keys.md")
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    suites_dir: Path | str = Field(Path("schemas"), description="expectation suites: <dir>/<model>/v<version>.json; "
                                   "an object-store URI, or by default <model.store>/.suites when the store is one")
    require_suite: bool = Field(False, description="fail a run whose model version has no suite file "
                                "(default: generate it from the model's registered training profile)")
    range_rule: Literal["quantile", "minmax"] = Field(
        "quantile", description="generated numeric ranges: 'quantile' widens the training 1st..99th percentile "
        "range by range_margin times its span, and the domain bounds of training.numeric win; 'minmax' (the "
        "earlier rule) widens the training min..max by range_margin spans and ignores the domain bounds")
    range_margin: float = Field(3.0, ge=0.0, description="generated numeric ranges: the training range "
                                "(see range_rule) widened by this many of its spans (floored at 0 if never negative)")
    null_flood_margin: float = Field(0.5, ge=0.0, le=1.0, description="a feature the model imputes still fails "
                                     "the day when its null share exceeds training's by more than this (a share, "
                                     "0.5 = 50 points); applied by every run, also with suites written before it")
    data_docs: bool = Field(True, description="the report DAG builds GX Data Docs (HTML) of each published run "
                            "(`scoring run` never does; `scoring docs` builds them on demand either way)")
    data_docs_dir: Path | str | None = Field(None, description="default: <results.staging_dir>/../data_docs, or "
                                             "<model.store>/.data_docs when the model store is an object store")
    drift: DriftConfig = DriftConfig()

    @field_validator("suites_dir", "data_docs_dir", mode="before")
    @classmethod
    def _dir_uri(cls, value: object) -> object:
        return parse_location(value, "validation folder", STORE_SCHEMES) if isinstance(value, str | Path) else value


class LabelsConfig(_Strict):
    """Where outcomes that arrive after scoring live (``scoring outcomes``; see docs/outcomes.md): a table or a
    SELECT giving one row per (key, label, observed-at time), on DuckDB or PostgreSQL."""

    kind: Literal["duckdb", "postgres"] = "duckdb"
    path: Path | None = Field(None, description="DuckDB database file (kind duckdb)")
    url: str | None = Field(None, description="postgresql:// URL (kind postgres)")
    table: str | None = Field(None, description="table or schema.table")
    query: str | None = Field(None, description="a SELECT used instead of a table")
    key_column: str = Field(description="the source key the label belongs to (source.key_column's values)")
    label_column: str = Field(description="the outcome: a class of the model, or a number for a regressor")
    observed_at_column: str = Field(description="when the outcome was observed (a label joins predictions "
                                    "of its key scored on that business day or before)")
    connection_id: str | None = Field(None, description="Airflow Connection id used under Airflow")
    connect_timeout_s: float = Field(30.0, ge=0)
    max_delay_days: int = Field(90, ge=0, le=3660, description="labels arrive at most this many days after "
                                "the scoring day: how far back a label is looked for a prediction of its key")

    @field_validator("key_column", "label_column", "observed_at_column")
    @classmethod
    def _ident(cls, value: str) -> str:
        return validate_column_name(value, "column name")  # quoted wherever used (storage/labels.py)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        return _table_name(value)

    @model_validator(mode="after")
    def _one_of(self) -> LabelsConfig:
        return _one_database_select(self)


def _check_zone(name: str) -> str:
    try:
        zone_info(name)
    except ScoringError as exc:
        raise ValueError(str(exc)) from None
    return name


# Airflow's presets that croniter does not know (the others, e.g. @daily, it expands itself).
CRON_PRESETS = {"@quarterly": "0 0 1 */3 *"}


def check_daily_cron(expression: str) -> str:
    """Refuse a cron that fires more than once a day (or is not a 5-field cron); return it unchanged.

    Each run replaces a whole business day's partition, so a second run the same day would only score the
    day again; sub-daily scoring would need interval partitions. Raises ValueError naming the problem.
    """
    from croniter import croniter  # imported on use: the DAG file parses configs and must stay light

    try:
        fields = croniter.expand(CRON_PRESETS.get(expression, expression))[0]
    except Exception:  # noqa: BLE001 - croniter raises several types for a bad expression
        raise ValueError(f"{expression!r} is not a cron expression (5 fields, or @daily, @weekly, ...)") from None
    if len(fields) != 5:
        raise ValueError(f"{expression!r} has {len(fields)} fields; Airflow takes 5 (minute hour day month weekday)")
    minutes, hours = fields[0], fields[1]
    if len(minutes) != 1 or len(hours) != 1 or "*" in (minutes[0], hours[0]):
        raise ValueError(f"{expression!r} fires more than once a day; a run scores a whole business day, so "
                         "the cron must fire at most once a day (e.g. '0 6 * * *')")
    return expression


class ScheduleConfig(_Strict):
    """When runs start (``cron``, in ``timezone``) and what a day is: every run scores one business day."""

    cron: str = Field("@daily", description="when the DAG runs, at most once a day; it scores the previous "
                      "business day")
    timezone: str = Field("UTC", description="IANA time zone of the business day (partitions, yesterday)")
    recheck_days: int = Field(0, ge=0, le=366, description="re-score any of the previous N business days whose "
                              "source row count changed since its last successful run (0: off)")
    start_date: dt.date = dt.date(2026, 1, 1)
    max_backfill_days: int = Field(3660, ge=1, description="a longer `scoring backfill` range needs --yes")
    catchup: bool = False
    max_active_runs: int = 1
    retries: int = Field(3, ge=0, description="retries of a task failing on a transient error")
    retry_delay_s: float = Field(60.0, gt=0, description="first retry delay; doubles each retry (max 30 min)")
    task_timeout_min: float = Field(60.0, gt=0, description="timeout of each task")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_daily_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)


class ScoringConfig(_Strict):
    """How chunks are scored (docs/compiled-scoring.md)."""

    engine: Literal["native", "compiled", "auto"] = Field(
        "auto", description="native: the model's own predict; compiled/auto: the version's compiled trees when "
        "proven bit-identical (scoring models compile) and re-checked at load, else native")
    compile_budget_s: float = Field(
        1800, gt=0, description="seconds a compile (register --compile, scoring models compile) may take; past "
        "that it is stopped and the version keeps the model's own predict")
    compile_background: bool = Field(
        True, description="register --compile returns while the compile runs in a process of its own "
        "(runs score natively until it is proven); false: register waits for it")


class DeploymentConfig(_Strict):
    """Where the processes of a run execute (docs/scaling-out.md)."""

    single_host: bool = Field(False, description="under a multi-host Airflow executor (Celery, Kubernetes, "
                              "...), accept a DuckDB results file and local staging, model store and suites "
                              "paths: only when every worker sees the same disk at the same paths")


class Config(_Strict):
    """The whole configuration file."""

    source: SourceConfig
    model: ModelConfig
    results: ResultsConfig
    output: OutputConfig = OutputConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    workers: int = Field(1, ge=1)
    scoring: ScoringConfig = ScoringConfig()
    training: TrainingConfig | None = None
    validation: ValidationConfig = ValidationConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    promotion: PromotionConfig = PromotionConfig()
    labels: LabelsConfig | None = None
    jobs: JobsConfig = JobsConfig()
    deployment: DeploymentConfig = DeploymentConfig()
    path: Path | None = Field(None, exclude=True, description="the file this was loaded from")

    @property
    def timezone(self) -> str:
        """The business time zone (``schedule.timezone``)."""
        return self.schedule.timezone


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None or value.is_absolute():
        return value
    return (base / value).resolve()


def default_data_docs(staging_dir: Path | str, base: Path) -> Path:
    """``<staging_dir>/../data_docs``; ``<config folder>/data_docs`` when staging is on an object store."""
    return staging_dir.parent / "data_docs" if isinstance(staging_dir, Path) else base / "data_docs"


def default_job_outputs(results: ResultsConfig, base: Path) -> Path:
    """``<results file's folder>/job_outputs`` (DuckDB results), else ``<local staging>/../job_outputs``, else
    ``<config folder>/job_outputs``."""
    if results.path is not None:
        return results.path.parent / "job_outputs"
    if isinstance(results.staging_dir, Path):
        return results.staging_dir.parent / "job_outputs"
    return base / "job_outputs"


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader refusing a key given twice in one mapping (YAML 1.2 says keys are unique; PyYAML
    would silently keep the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {str(key)[:80]!r} is given twice (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_line(exc: yaml.YAMLError) -> str:
    """A PyYAML error on one line (its own text spans several)."""
    return " ".join(str(exc).split())[:300]


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file to use: explicit, else $SCORING_CONFIG, else ./scoring.yaml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a YAML config; raise ConfigError naming the file and the key at fault."""
    file = config_path(path)
    if not file.is_file():
        raise ConfigError(f"config file {str(file)!r} not found (pass --config or set {CONFIG_ENV})")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(file)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8") \
            from None
    return _parse_config(text, f"config file {str(file)!r}", file.resolve().parent, file.resolve())


def load_config_text(text: str, origin: str, base: Path) -> Config:
    """A config given as YAML (or JSON) text instead of a file, e.g. an Airflow Variable.

    Args:
        text: the YAML or JSON document.
        origin: names the text in error messages (``Airflow Variable 'scoring_config'``).
        base: the folder relative paths in the text are resolved against.

    Raises:
        ConfigError: naming ``origin`` and the key at fault.
    """
    return _parse_config(text, origin, base.resolve(), None)


def _parse_config(text: str, origin: str, base: Path, file: Path | None) -> Config:
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {_yaml_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{origin}: {where}: {first['msg']}") from None
    cfg.path = file
    cfg.source.path = _resolve(base, cfg.source.path)
    if isinstance(cfg.model.store, Path):
        cfg.model.store = _resolve(base, cfg.model.store)
    elif "suites_dir" not in cfg.validation.model_fields_set:  # suites follow an object-store model store
        cfg.validation.suites_dir = f"{cfg.model.store.rstrip('/')}/.suites"
    if cfg.labels is not None:
        cfg.labels.path = _resolve(base, cfg.labels.path)
    cfg.results.path = _resolve(base, cfg.results.path)
    if isinstance(cfg.results.staging_dir, Path):
        cfg.results.staging_dir = _resolve(base, cfg.results.staging_dir)
    cfg.results.export_dir = _resolve(base, cfg.results.export_dir)
    cfg.jobs.output_dir = _resolve(base, cfg.jobs.output_dir) or default_job_outputs(cfg.results, base)
    if isinstance(cfg.validation.suites_dir, Path):
        cfg.validation.suites_dir = _resolve(base, cfg.validation.suites_dir)
    if isinstance(cfg.validation.data_docs_dir, Path):
        cfg.validation.data_docs_dir = _resolve(base, cfg.validation.data_docs_dir)
    elif cfg.validation.data_docs_dir is None:  # Data Docs follow an object-store model store too
        cfg.validation.data_docs_dir = (f"{cfg.model.store.rstrip('/')}/.data_docs" if isinstance(cfg.model.store, str)
                                        else default_data_docs(cfg.results.staging_dir, base))
    if cfg.source.kind == cfg.results.kind == "duckdb" and cfg.source.path == cfg.results.path:
        # DuckDB allows one writer per file: the run reads the source while it publishes results.
        raise ConfigError(f"{origin}: results.path must differ from source.path")
    return cfg
