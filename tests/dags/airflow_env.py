"""Airflow for the DAG tests: a private AIRFLOW_HOME per test, used only by subprocesses.

Airflow reads its settings once per process, so every Airflow call of the tests runs in a subprocess whose
environment names the home, the dags folder and the scoring configs; nothing is set in this process.

Two metadata databases: ``airflow_home`` copies a migrated SQLite file (enough for ``dag.test()``, one process);
``airflow_pg`` gives a test that runs a scheduler beside CLI calls its own PostgreSQL database (a copy of a
migrated template database, dropped afterwards), since SQLite's single writer makes a CLI call racing the
scheduler fail with "database is locked" on a loaded machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DAG_ID = "scoring_loan_default"
REPORT_DAG_ID = "scoring_reports_loan_default"


def airflow_env(home: Path, configs: list[Path], **extra: str) -> dict[str, str]:
    """Environment for an Airflow subprocess: its own home and SQLite DB, this repo's dags, these configs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # SQLite allows one writer; wait for the lock (default 5 s) when the scheduler and a CLI call overlap.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=60",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "SCORING_CONFIGS": os.pathsep.join(str(c) for c in configs),
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def airflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated Airflow metadata DB, made once; each test copies it."""
    home = tmp_path_factory.mktemp("airflow_template")
    out = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=airflow_env(home, []), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return home / "airflow.db"


@pytest.fixture()
def airflow_home(tmp_path: Path, airflow_db_template: Path) -> Path:
    """A fresh AIRFLOW_HOME with a migrated DB."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    return home


def run_days(env: dict[str, str], days: list[str], conf: dict | None = None, dag_id: str = DAG_ID,
             timeout: float = 600, output: list[str] | None = None) -> list[dict]:
    """``dag.test()`` each day in one subprocess (tests/dags/dag_runner.py); one result dict per day.

    ``output``, when given, receives the subprocess's stdout and stderr (``dag.test()`` logs the tasks there).
    """
    cmd = [sys.executable, "-m", "tests.dags.dag_runner", "--dag-id", dag_id]
    for day in days:
        cmd += ["--day", day]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if output is not None:
        output += [out.stdout, out.stderr]
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(days), (out.stdout + out.stderr)[-5000:]
    return lines


class DagRunner:
    """One ``dag.test()`` process (``tests.dags.dag_runner --serve``) for several calls of a test, in order:
    Airflow is imported and the dags folder parsed once, not once per call. Each call's runs end before it
    returns, so a test checks the results between calls as with ``run_days``. Use as a context manager."""

    def __init__(self, env: dict[str, str], dag_id: str = DAG_ID, timeout: float = 600) -> None:
        import queue
        import threading

        self.timeout = timeout
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.dags.dag_runner", "--dag-id", dag_id, "--serve"],
                                     env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            for line in self.proc.stdout:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def run(self, days: list[str], conf: dict | None = None, env: dict[str, str | None] | None = None,
            output: list[str] | None = None) -> list[dict]:
        """As ``run_days``; ``env`` sets (or, with None, unsets) variables of the process before these runs.
        ``output`` receives the process's output (stdout and stderr) since the previous call."""
        import queue
        import time

        from tests.dags.dag_runner import SERVE_DONE, SERVE_RESULT

        self.proc.stdin.write(json.dumps({"days": days, "conf": conf, "env": env or {}}) + "\n")
        self.proc.stdin.flush()
        seen: list[str] = []
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                raise AssertionError(f"dag_runner: no answer in {self.timeout:.0f}s\n" + "".join(seen)[-5000:])
            assert line is not None, f"dag_runner exited ({self.proc.wait()})\n" + "".join(seen)[-5000:]
            if line.rstrip("\n") == SERVE_DONE:
                break
            seen.append(line)
        if output is not None:
            output.append("".join(seen))
        results = [json.loads(line[len(SERVE_RESULT):]) for line in seen if line.startswith(SERVE_RESULT)]
        assert len(results) == len(days), "".join(seen)[-5000:]
        return results

    def close(self) -> None:
        """End the process (stdin closed: it returns after the current call); killed after 60 s."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> DagRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- PostgreSQL metadata database, for tests that run the scheduler beside CLI calls -----------------------------


def _pg_urls(db: str) -> dict[str, str]:
    """Airflow's sync and async connection settings for database ``db`` on the test server (psycopg 3 both)."""
    base = "postgres@127.0.0.1:5432/" + db
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{base}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg_async://{base}"}


def _admin(statement: str, *names: str) -> None:
    """Run one CREATE/DROP DATABASE statement on the test server; ``names`` fill its ``{}`` as identifiers."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(ADMIN_PG, autocommit=True, connect_timeout=10) as con:
        for name in names:  # a database cannot be dropped or copied while connected to
            con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        con.execute(sql.SQL(statement).format(*(sql.Identifier(n) for n in names)))


@dataclass
class AirflowPG:
    """A private AIRFLOW_HOME whose metadata database is ``db`` on the test PostgreSQL server."""

    home: Path
    db: str

    def env(self, configs: list[Path], **extra: str) -> dict[str, str]:
        """``airflow_env`` for this home with this database."""
        return airflow_env(self.home, configs, **{**_pg_urls(self.db), **extra})

    def query(self, statement: str, params: Sequence | None = None) -> list[tuple]:
        """Rows of one read-only query on the metadata database."""
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.db}", connect_timeout=10) as con:
            return con.execute(statement, params).fetchall()


@pytest.fixture(scope="session")
def airflow_pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database migrated by ``airflow db migrate`` once per session; dropped at the end."""
    name = f"airflow_tmpl_{uuid.uuid4().hex[:10]}"
    _admin("CREATE DATABASE {}", name)
    try:
        home = tmp_path_factory.mktemp("airflow_pg_template")
        out = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=airflow_env(home, [], **_pg_urls(name)),
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        yield name
    finally:
        _admin("DROP DATABASE IF EXISTS {}", name)


@pytest.fixture()
def airflow_pg(tmp_path: Path, airflow_pg_template: str) -> Iterator[AirflowPG]:
    """A fresh AIRFLOW_HOME with its own migrated PostgreSQL metadata database, dropped after the test."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    name = f"airflow_test_{uuid.uuid4().hex[:10]}"
    _admin("CREATE DATABASE {} TEMPLATE {}", name, airflow_pg_template)
    try:
        yield AirflowPG(home, name)
    finally:
        _admin("DROP DATABASE IF EXISTS {}", name)
