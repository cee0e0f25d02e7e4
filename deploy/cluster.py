"""A local Airflow cluster on the CeleryExecutor: one api-server, one scheduler, one dag-processor and N Celery
workers, with PostgreSQL as the metadata DB and Celery result backend and Redis as the broker.

    python -m deploy.cluster up [--home airflow_cluster] [--db scoring_airflow] [--redis-db 5] [--workers 2]
    python -m deploy.cluster status [--home airflow_cluster]
    python -m deploy.cluster down [--home airflow_cluster] [--drop-db]      (also drops the DB, flushes the broker)

(``make cluster-up`` / ``make cluster-down`` / ``make cluster-status``). ``up`` creates the metadata database
if it is missing, migrates it, creates the ``scoring_publish`` pool (size 1: publish stays the single writer),
starts every process in its own session and writes their pids to ``<home>/cluster.json``; ``down`` stops exactly
those pids (SIGTERM to each session, SIGKILL after a grace period). Nothing here is a scheduler or a queue of
its own: Airflow schedules, Celery (over Redis) hands the tasks to the workers.

Every process gets the same core settings (``component_env``): ``AIRFLOW__CORE__EXECUTOR=CeleryExecutor``,
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` (PostgreSQL), ``AIRFLOW__CELERY__BROKER_URL`` (Redis, own db number),
``AIRFLOW__CELERY__RESULT_BACKEND`` (``db+`` the metadata DB), ``AIRFLOW__API_AUTH__JWT_SECRET`` (one secret
shared by the api-server, which checks task tokens, and the scheduler, which issues them) and
``AIRFLOW__CORE__EXECUTION_API_SERVER_URL`` (where workers' task processes report: the api-server's
``/execution/``). A worker runs ``airflow celery worker --concurrency C --celery-hostname NAME@%h``; when this
runs as root with ``unshare`` available, each worker gets its own UTS namespace (its own hostname, recorded
as ``TaskInstance.hostname`` through ``[core] hostname_callable = socket.gethostname``) and its own mount
namespace with a private tmpfs over each ``isolate`` path, so a worker cannot read what another worker wrote
to its local disk.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STATE = "cluster.json"
POOL = "scoring_publish"
ADMIN_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class ClusterSpec:
    """What ``up`` starts.

    Attributes:
        home: AIRFLOW_HOME of every component (logs, pid state); created if missing.
        pg_admin_url: a PostgreSQL URL of a role that may create databases (libpq form).
        db: name of the metadata database (created if missing; also the Celery result backend).
        redis_url: the broker, e.g. ``redis://127.0.0.1:6379/5`` (own db number).
        api_port: loopback port of the api-server.
        workers: number of Celery workers; each runs ``concurrency`` task processes at a time.
        configs: scoring config files the DAG file builds DAGs for (``SCORING_CONFIGS``).
        isolate: paths a private tmpfs is mounted over in each worker (needs root and ``unshare``).
        shared_ro: paths each isolated worker still sees, read-only, through its private mounts (bound after
            the tmpfs mounts, so they may lie under an ``isolate`` path): what a deployment ships to every
            machine, such as the scoring config.
        worker_env: extra environment of the workers only (e.g. thread pinning).
        env: extra environment of every component (e.g. lower heartbeat timeouts in tests).
        redis_prefix: Celery/kombu key prefix in Redis (``global_keyprefix``), so a shared db is usable.
    """

    home: Path
    db: str = "scoring_airflow"
    pg_admin_url: str = ADMIN_PG
    redis_url: str = "redis://127.0.0.1:6379/5"
    api_port: int = 8081
    workers: int = 2
    concurrency: int = 1
    configs: list[Path] = field(default_factory=list)
    isolate: list[Path] = field(default_factory=list)
    shared_ro: list[Path] = field(default_factory=list)
    worker_env: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    redis_prefix: str = ""


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def db_url(spec: ClusterSpec, driver: str = "postgresql+psycopg") -> str:
    """SQLAlchemy URL of the metadata database (same server and role as ``pg_admin_url``)."""
    from sqlalchemy.engine import make_url

    return make_url(spec.pg_admin_url).set(drivername=driver, database=spec.db).render_as_string(
        hide_password=False)


def create_database(spec: ClusterSpec) -> bool:
    """Create the metadata database unless it exists; True when created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(spec.pg_admin_url, autocommit=True, connect_timeout=10) as con:
        if con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [spec.db]).fetchone():
            return False
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(spec.db)))
    return True


def drop_database(spec: ClusterSpec) -> None:
    """Drop the metadata database (its open connections are ended first)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(spec.pg_admin_url, autocommit=True, connect_timeout=10) as con:
        con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [spec.db])
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(spec.db)))


def component_env(spec: ClusterSpec, secret: str) -> dict[str, str]:
    """The environment every component shares (see the module docstring)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    url = db_url(spec)
    env.update({
        "AIRFLOW_HOME": str(spec.home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        # Airflow would derive asyncpg (not installed); psycopg 3 has an async driver of its own.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": db_url(spec, "postgresql+psycopg_async"),
        "AIRFLOW__CELERY__BROKER_URL": spec.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(spec.concurrency),
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "deploy.celery_config.CELERY_CONFIG",
        # A killed worker's unacknowledged task is not re-delivered by Redis before this; Airflow's own task
        # heartbeat timeout retries it long before (the default is a day).
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(spec.api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{spec.api_port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{spec.api_port}/execution/",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    if spec.redis_prefix:
        env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] = spec.redis_prefix
    if spec.configs:
        env["SCORING_CONFIGS"] = os.pathsep.join(str(c) for c in spec.configs)
    env.update(spec.env)
    return env


def can_isolate() -> bool:
    """True when workers can get their own hostname and mounts (root, ``unshare`` on PATH)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


# sh -c script of an isolated worker: $1 hostname, the paths to share read-only, "--", the paths to hide, "--",
# then the worker command. The shared paths are bound to a private holder (/mnt, a tmpfs of this namespace)
# before the hiding tmpfs mounts, then bound back read-only at their own place.
_ISOLATE = """set -e
hostname "$1"; shift
mount -t tmpfs -o size=1m,mode=0700 tmpfs /mnt
n=0
while [ "$1" != "--" ]; do
  n=$((n + 1)); mkdir /mnt/$n; mount --bind "$1" /mnt/$n; printf '%s\\n' "$1" >> /mnt/shared; shift
done
shift
while [ "$1" != "--" ]; do mkdir -p "$1"; mount -t tmpfs -o size=1g,mode=0700 tmpfs "$1"; shift; done
shift
n=0
if [ -f /mnt/shared ]; then
  while IFS= read -r path; do
    n=$((n + 1)); mkdir -p "$path"; mount --bind /mnt/$n "$path"; mount -o remount,bind,ro "$path"
  done < /mnt/shared
fi
exec "$@"
"""


def worker_name(index: int) -> str:
    """Hostname of worker ``index`` (1-based) when workers get their own UTS namespace."""
    return f"scoring-worker-{index}"


def worker_command(spec: ClusterSpec, index: int) -> list[str]:
    """The command line of worker ``index`` (1-based), under ``unshare`` when ``can_isolate()``."""
    name = worker_name(index)
    cmd = [str(BIN / "airflow"), "celery", "worker", "--concurrency", str(spec.concurrency),
           "--celery-hostname", f"{name}@%h", "--without-mingle", "--without-gossip"]
    if not can_isolate():
        if spec.isolate or spec.shared_ro:
            raise RuntimeError("isolating workers needs root and unshare (util-linux)")
        return cmd
    return ["unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", _ISOLATE, "sh", name,
            *[str(p) for p in spec.shared_ro], "--", *[str(p) for p in spec.isolate], "--", *cmd]


def _airflow(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    out = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed: {(out.stdout + out.stderr)[-3000:]}")
    return out.stdout


def _start(name: str, cmd: list[str], env: dict[str, str], logs: Path) -> int:
    with (logs / f"{name}.log").open("ab") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=ROOT)
    log.info("started %s (pid %d)", name, proc.pid)
    return proc.pid


def up(spec: ClusterSpec) -> dict[str, int]:
    """Create/migrate the metadata DB, create the pool, start every component; returns pids by name.

    Raises:
        RuntimeError: a cluster recorded in ``home`` is still running, or an ``airflow`` command failed.
    """
    spec.home.mkdir(parents=True, exist_ok=True)
    if alive(spec.home):
        raise RuntimeError(f"a cluster is already running from {spec.home} (stop it with: down --home {spec.home})")
    logs = spec.home / "logs" / "components"
    logs.mkdir(parents=True, exist_ok=True)
    create_database(spec)
    secret = secrets.token_hex(32)
    env = component_env(spec, secret)
    _airflow(env, "db", "migrate", timeout=600)
    _airflow(env, "pools", "set", POOL, "1", "single writer of the results database")
    state = {"spec": {"db": spec.db, "pg_admin_url": spec.pg_admin_url, "redis_url": spec.redis_url,
                      "redis_prefix": spec.redis_prefix, "api_port": spec.api_port},
             "secret": secret, "pids": {}}
    _write_state(spec.home, state)
    write_shell_env(spec.home, env)
    airflow = str(BIN / "airflow")
    try:
        for name, cmd in (("api-server", [airflow, "api-server"]), ("scheduler", [airflow, "scheduler"]),
                          ("dag-processor", [airflow, "dag-processor"])):
            state["pids"][name] = _start(name, cmd, _own_ports(env), logs)
            _write_state(spec.home, state)
        for i in range(1, spec.workers + 1):
            start_worker(spec, i)
    except BaseException:
        down(spec.home)
        raise
    return dict(read_state(spec.home)["pids"])


def _own_ports(env: dict[str, str]) -> dict[str, str]:
    # Each component serves its logs on its own port, so nothing collides with another Airflow on this host.
    return {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}


SHELL_ENV = "env.sh"
# What an `airflow` CLI call in a shell needs to reach this cluster: its home, its metadata DB, its dags and
# the scoring configs (the CLI reads and writes the metadata DB directly; it needs no broker and no secret).
SHELL_KEYS = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__CORE__EXECUTOR",
              "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
              "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND", "SCORING_CONFIGS", "PYTHONPATH")


def write_shell_env(home: Path, env: dict[str, str]) -> Path:
    """``<home>/env.sh``: ``export`` lines of the settings a shell needs to reach the cluster with the
    ``airflow`` CLI (``source airflow_cluster/env.sh``); no secret in it."""
    import shlex

    lines = [f"export {k}={shlex.quote(env[k])}" for k in SHELL_KEYS if env.get(k)]
    lines.append(f"export PATH={shlex.quote(str(BIN))}:\"$PATH\"")
    path = home / SHELL_ENV
    path.write_text("# written by python -m deploy.cluster up: source it to reach this cluster\n" + "\n".join(lines) + "\n")
    return path


def _write_state(home: Path, state: dict) -> None:
    path = home / STATE
    path.write_text(json.dumps(state))
    path.chmod(0o600)  # it holds the cluster's JWT secret


def start_worker(spec: ClusterSpec, index: int) -> int:
    """Start Celery worker ``index`` (1-based) of the cluster ``up`` started from ``spec.home``; returns its pid.

    Workers import the scoring stack once (``SCORING_PRELOAD=1``, see ``deploy/celery_config.py``).
    """
    state = read_state(spec.home)
    env = {**component_env(spec, state["secret"]), "SCORING_PRELOAD": "1", **spec.worker_env}
    pid = _start(f"worker-{index}", worker_command(spec, index), _own_ports(env), spec.home / "logs" / "components")
    state["pids"][f"worker-{index}"] = pid
    _write_state(spec.home, state)
    return pid


def stop_worker(home: Path, index: int) -> None:
    """Stop worker ``index`` (SIGTERM: Celery's warm shutdown, then SIGKILL) and forget its pid."""
    state = read_state(home)
    pid = state["pids"].pop(f"worker-{index}", None)
    if pid is not None:
        stop_pid(pid)
        _write_state(home, state)


def flush_broker(redis_url: str, prefix: str = "") -> int:
    """Delete the cluster's broker keys: those under ``prefix`` when it has one, else its whole Redis db.

    Returns the number of keys deleted."""
    import redis

    con = redis.Redis.from_url(redis_url, socket_timeout=5)
    if not prefix:
        count = con.dbsize()
        con.flushdb()
        return count
    keys = list(con.scan_iter(match=prefix + "*", count=1000))
    return con.delete(*keys) if keys else 0


def read_state(home: Path) -> dict:
    """The ``cluster.json`` that ``up`` wrote (empty when none)."""
    path = home / STATE
    return json.loads(path.read_text()) if path.is_file() else {}


def alive(home: Path) -> dict[str, int]:
    """Recorded components still running, by name."""
    import psutil

    found = {}
    for name, pid in read_state(home).get("pids", {}).items():
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and os.getpgid(pid) == pid:
                found[name] = pid
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def session_members(pid: int) -> list:
    """The processes of the session ``pid`` leads (a component, its children and their task processes)."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == pid:
                members.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def kill_component(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to every process of the component started as session ``pid``; returns their pids."""
    pids = []
    for proc in session_members(pid):
        try:
            os.kill(proc.pid, sig)
            pids.append(proc.pid)
        except ProcessLookupError:
            continue
    return pids


def stop_pid(pid: int, grace: float = 20) -> None:
    """SIGTERM every process of session ``pid``, then SIGKILL what is left after ``grace`` seconds."""
    import psutil

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        members = session_members(pid)
        if not members:
            return
        for proc in members:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                continue
        psutil.wait_procs(members, timeout=wait)
    try:  # reap it when it is our child (the test starts the cluster in-process)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def down(home: Path, drop_db: bool = False) -> list[str]:
    """Stop every component ``up`` recorded in ``home`` (workers first); returns the names stopped."""
    state = read_state(home)
    pids = state.get("pids", {})
    order = sorted(pids, key=lambda n: (not n.startswith("worker"), n))
    for name in order:
        stop_pid(pids[name])
    if drop_db and state.get("spec"):
        recorded = state["spec"]
        drop_database(ClusterSpec(home=home, db=recorded["db"], pg_admin_url=recorded["pg_admin_url"]))
        flush_broker(recorded["redis_url"], recorded.get("redis_prefix", ""))
    if (home / STATE).is_file():
        (home / STATE).unlink()
    return order


def meta_query(spec: ClusterSpec, query: str, params: Sequence | None = None) -> list[tuple]:
    """Rows of a read-only ``query`` on the cluster's metadata database (psycopg, 5 s connect timeout)."""
    import psycopg

    with psycopg.connect(db_url(spec, "postgresql"), connect_timeout=5) as con:
        return con.execute(query, params).fetchall()


def trigger(spec: ClusterSpec, dag_id: str, run_id: str, conf: dict) -> None:
    """``airflow dags trigger`` (a manual run, no logical date) with ``conf``. Raises RuntimeError if refused."""
    _airflow(component_env(spec, read_state(spec.home).get("secret", "")), "dags", "trigger", dag_id, "--run-id",
             run_id, "--conf", json.dumps(conf), timeout=120)


def api_healthy(port: int) -> bool:
    """True when the api-server answers its health endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5):
            return True
    except OSError:
        return False


def wait_until(what: str, predicate, timeout: float, every: float = 1.0) -> None:
    """Poll ``predicate`` until true. Raises TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _say(line: str, stream=None) -> None:
    (stream or sys.stdout).write(line + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--home", type=Path, default=ROOT / "airflow_cluster")
    parser.add_argument("--db", default="scoring_airflow")
    parser.add_argument("--pg", default=ADMIN_PG, help="PostgreSQL URL of a role that may create databases")
    parser.add_argument("--redis-db", type=int, default=5)
    parser.add_argument("--api-port", type=int, default=8081)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--config", action="append", type=Path, default=[], help="scoring config (repeatable)")
    parser.add_argument("--isolate", action="append", type=Path, default=[],
                        help="path to hide behind a private tmpfs in each worker (repeatable; root only)")
    parser.add_argument("--drop-db", action="store_true", help="down: also drop the metadata database and flush the broker's Redis db")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    home = args.home.resolve()
    if args.action == "status":
        running = alive(home)
        if not read_state(home).get("pids"):
            _say(f"no cluster recorded in {home}")
        for name, pid in read_state(home).get("pids", {}).items():
            _say(f"{name:14} pid {pid:>7}  {'running' if name in running else 'stopped'}")
        return 0 if running else 3
    if args.action == "down":
        stopped = down(home, drop_db=args.drop_db)
        _say(f"stopped {', '.join(stopped) or 'nothing (no cluster recorded in ' + str(home) + ')'}")
        return 0
    spec = ClusterSpec(home=home, db=args.db, pg_admin_url=args.pg, redis_url=f"redis://127.0.0.1:6379/{args.redis_db}",
                       api_port=args.api_port, workers=args.workers, concurrency=args.concurrency,
                       configs=[c.resolve() for c in args.config], isolate=[p.resolve() for p in args.isolate])
    try:
        pids = up(spec)
        wait_until("the api-server", lambda: api_healthy(spec.api_port), 180, every=2)
    except Exception as exc:  # one line, never a traceback: the component logs have the details
        _say(f"cluster up failed: {str(exc).splitlines()[0]} (component logs: {home / 'logs' / 'components'})",
             sys.stderr)
        return 1
    for name, pid in pids.items():
        _say(f"{name:14} pid {pid:>7}")
    _say(f"api-server http://127.0.0.1:{spec.api_port} (admin password: "
          f"{home / 'simple_auth_manager_passwords.json.generated'}); stop with: make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
