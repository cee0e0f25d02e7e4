"""Where the scoring DAGs find their configs, shared by the two DAG files of this folder (no DAG here).

First match wins (docs/airflow.md "Where the DAGs find their config"):

1. ``$SCORING_CONFIGS``: config file paths separated by ``:``;
2. the Airflow Variable ``scoring_config``, else ``$SCORING_CONFIG``: one config, as a file path (relative
   paths are relative to this folder) or as the YAML/JSON text itself;
3. the ``configs`` listed in ``scoring_dags.yaml`` next to this file (paths relative to this folder).

``load_all`` loads each and checks it against this Airflow's executor (``scoring.deployment``): the good ones
get DAGs in ``scoring_dags.py``; each bad one is one line of the import error of ``scoring_config_errors.py``,
so it never hides the other configs' DAGs.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from scoring.config import Config, load_config, load_config_text

CONFIGS_ENV = "SCORING_CONFIGS"
CONFIG_ENV = "SCORING_CONFIG"
CONFIG_VARIABLE = "scoring_config"
HERE = Path(__file__).resolve().parent
LISTING = HERE / "scoring_dags.yaml"
INLINE = ("variable:", "env:")  # a config given as text, read again by each task from the same place


def _variable(name: str) -> str | None:
    """An Airflow Variable (``AIRFLOW_VAR_<NAME>``, a secrets backend or the metadata DB), None if unset."""
    from airflow.sdk import Variable

    try:
        value = Variable.get(name, default=None)
    except Exception:  # no metadata DB or API reachable from this process: as if unset  # noqa: BLE001
        return None
    return value if isinstance(value, str) and value.strip() else None


def _is_text(value: str) -> bool:
    """Whether a Variable's or environment variable's value is the config itself rather than a path."""
    return "\n" in value.strip() or value.lstrip().startswith("{")


def config_sources() -> list[str]:
    """Where the configs to build DAGs for are (the module docstring's order): absolute file paths, or
    ``variable:scoring_config`` / ``env:SCORING_CONFIG`` for a config given as text.

    Raises:
        ConfigError: nothing names a config.
    """
    from scoring.errors import ConfigError

    if os.environ.get(CONFIGS_ENV, "").strip():
        return [str(Path(p).resolve()) for p in os.environ[CONFIGS_ENV].split(os.pathsep) if p.strip()]
    for where, value in ((f"variable:{CONFIG_VARIABLE}", _variable(CONFIG_VARIABLE)),
                         (f"env:{CONFIG_ENV}", os.environ.get(CONFIG_ENV))):
        if value and value.strip():
            return [where] if _is_text(value) else [str((HERE / value.strip()).resolve())]
    if LISTING.is_file():
        listed = (yaml.safe_load(LISTING.read_text()) or {}).get("configs") or []
        return [str((HERE / p).resolve()) for p in listed]
    raise ConfigError(f"no scoring config: set the Airflow Variable {CONFIG_VARIABLE!r} or ${CONFIG_ENV} (a "
                      f"path or the YAML itself), or list files in {LISTING.name} next to the DAG file")


config_paths = config_sources  # the earlier name


def read_config(source: str) -> Config:
    """Load the config a source names (``config_sources``); raise ConfigError in one line."""
    from scoring.errors import ConfigError

    if source.startswith(INLINE):
        kind, _, name = source.partition(":")
        text = _variable(name) if kind == "variable" else os.environ.get(name)
        if not text:
            raise ConfigError(f"the {'Airflow Variable' if kind == 'variable' else 'environment variable'} "
                              f"{name!r} that held the scoring config is not set here")
        origin = f"Airflow Variable {name!r}" if kind == "variable" else f"${name}"
        return load_config_text(text, origin, HERE)
    if not Path(source).is_file():
        raise ConfigError(f"config file {source!r} not found: put it inside the dags folder and list it in "
                          f"{LISTING.name}, or set the Airflow Variable {CONFIG_VARIABLE!r} or ${CONFIG_ENV} "
                          "(a path or the YAML itself)")
    return load_config(source)


def executor_setting() -> str | None:
    """Airflow's ``[core] executor`` as written (``AIRFLOW__CORE__EXECUTOR`` or airflow.cfg)."""
    if os.environ.get("AIRFLOW__CORE__EXECUTOR"):
        return os.environ["AIRFLOW__CORE__EXECUTOR"]
    from airflow.sdk.configuration import conf

    return conf.get("core", "executor", fallback=None)


def runtime_config(source: str) -> Config:
    """The config under Airflow: sections with a ``connection_id`` are located by that Airflow Connection."""
    from airflow.sdk import BaseHook

    from scoring.storage.connections import ConnectionInfo, apply_connections

    def lookup(conn_id: str) -> ConnectionInfo:
        conn = BaseHook.get_connection(conn_id)
        return ConnectionInfo(conn_id, conn.conn_type or "", conn.host, conn.port, conn.login, conn.password,
                              conn.schema, conn.extra_dejson)

    return apply_connections(read_config(source), lookup)



def describe_source(source: str) -> str:
    """How an operator finds the config a DAG was built from."""
    if source.startswith("variable:"):
        return f"the Airflow Variable `{source.partition(':')[2]}`"
    if source.startswith("env:"):
        return f"the environment variable `{source.partition(':')[2]}` of the Airflow processes"
    return f"`{source}`"



def load_all() -> tuple[list[tuple[str, Config]], list[str]]:
    """Every config source with its loaded config, and one line per source that cannot be used here (missing,
    invalid, refused under this executor, or a model name another config already has)."""
    from scoring.deployment import check_deployment
    from scoring.errors import ScoringError

    try:
        sources = config_sources()
    except ScoringError as exc:
        return [], [str(exc)]
    executor = executor_setting()
    loaded: list[tuple[str, Config]] = []
    errors: list[str] = []
    for source in sources:
        try:
            cfg = read_config(source)
            check_deployment(cfg, executor, origin=f"config {describe_source(source).strip('`')}")
            if any(c.model.name == cfg.model.name for _, c in loaded):
                raise ScoringError(f"config {describe_source(source).strip('`')}: model {cfg.model.name!r} already has "
                                   "its DAGs from another config (one config per model name)")
        except ScoringError as exc:
            errors.append(str(exc).splitlines()[0])
            continue
        loaded.append((source, cfg))
    return loaded, errors
