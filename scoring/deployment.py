"""Which configs can work where: under an executor whose workers are other hosts, every piece of state a run
reads or writes must be on a database server or an object store, not on one host's disk.

The scheduler side (``dags/``) reads the executor's name from Airflow's settings and passes it here as a plain
string; this module never imports Airflow. ``deployment.single_host: true`` in the config accepts local paths
for teams whose workers share one disk (docs/scaling-out.md).
"""

from __future__ import annotations

from pathlib import Path

from scoring.config import Config
from scoring.errors import ConfigError

# Executors whose task processes run on the scheduler's host. Anything else (CeleryExecutor,
# KubernetesExecutor, EdgeExecutor, a custom or hybrid one) is treated as multi-host.
SINGLE_HOST_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


def executor_names(setting: str | None) -> list[str]:
    """The class names in Airflow's ``[core] executor`` setting.

    Args:
        setting: e.g. ``CeleryExecutor``, ``LocalExecutor,KubernetesExecutor`` (Airflow 3's list form),
            ``my_alias:my.module.MyExecutor`` or a dotted path; None or empty means Airflow's default.

    Returns:
        One class name per configured executor (``["LocalExecutor"]`` for the default).
    """
    names = []
    for item in (setting or "").split(","):
        item = item.strip()
        if item:
            names.append(item.rsplit(":", 1)[-1].rsplit(".", 1)[-1])
    return names or ["LocalExecutor"]


def is_multi_host(setting: str | None) -> bool:
    """Whether any executor of ``setting`` may run tasks on hosts other than this one."""
    return any(name not in SINGLE_HOST_EXECUTORS for name in executor_names(setting))


def _local(value: object) -> bool:
    """A local path (a ``Path``, or text without a ``scheme://``, or ``file://``)."""
    if value is None:
        return False
    if isinstance(value, Path):
        return True
    text = str(value)
    return "://" not in text or text.startswith("file://")


def host_bound_state(cfg: Config) -> list[str]:
    """The settings of ``cfg`` that name one host's disk, each as ``key (value)``; empty when none do."""
    found = []
    if cfg.source.kind == "duckdb":
        found.append(f"source.path ({cfg.source.path}, a DuckDB file)")
    if cfg.results.kind == "duckdb":
        found.append(f"results.path ({cfg.results.path}, a DuckDB file)")
    for key, value in (("results.staging_dir", cfg.results.staging_dir), ("model.store", cfg.model.store),
                       ("validation.suites_dir", cfg.validation.suites_dir)):
        if _local(value):
            found.append(f"{key} ({value})")
    return found


def check_deployment(cfg: Config, executor: str | None, origin: str = "config") -> None:
    """Refuse a config that cannot work under ``executor`` (Airflow's ``[core] executor`` setting).

    Under a multi-host executor a DuckDB source or results file, or a local staging folder, model store or
    suites folder, would be read or written on whichever worker runs the task: chunks staged on one host are
    missing at publish on another, and predictions written to one worker's disk vanish with it.

    Raises:
        ConfigError: one line naming the settings at fault and what to configure instead, unless
            ``deployment.single_host`` is true or the executor runs tasks on this host only.
    """
    if cfg.deployment.single_host or not is_multi_host(executor):
        return
    found = host_bound_state(cfg)
    if found:
        raise ConfigError(
            f"{origin}: {', '.join(executor_names(executor))} runs tasks on other hosts, but "
            f"{'; '.join(found)} {'is' if len(found) == 1 else 'are'} on this host's disk: use PostgreSQL source and results and s3:// "
            "staging, model store and suites (docs/scaling-out.md), or set deployment.single_host: true if "
            "every worker shares this disk")
