"""Hostile job submitters, through the real CLI: a query job cannot read files, the environment, settings or
tables outside ``jobs.allowed_tables``; its errors never echo values; ``--output`` writes only under
``jobs.output_dir``, never through a symlink or over an existing file without ``--overwrite``. Each refusal is
one line, and no secret reaches an output file, the jobs ledger, the predictions or the message."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.storage.duck import duck_connect
from tests.conftest import SCORE_DAY, write_config

runner = CliRunner()
SECRET = "TOPSECRET-7f3a91"
DAY_FILTER = f"WHERE CAST(applied_at AS DATE) = DATE '{SCORE_DAY}'"


@pytest.fixture()
def hostile(tmp_path: Path, sample_db: Path, store: Path) -> dict:
    """A source with a table jobs may not read, a secret file, and a config whose jobs read loan_applications."""
    src = tmp_path / "src.duckdb"
    shutil.copy(sample_db, src)
    with duckdb.connect(str(src)) as con:
        # A value of an allowed table that a failing cast would echo (the error-channel probe).
        con.execute("UPDATE loan_applications SET state = ? WHERE application_id = (SELECT min(application_id) "
                    f"FROM loan_applications {DAY_FILTER})", [SECRET])
        con.execute("CREATE TABLE credentials (token VARCHAR)")
        con.execute("INSERT INTO credentials VALUES (?)", [SECRET])
        con.execute("CREATE VIEW v_credentials AS SELECT * FROM credentials")
    secret_file = tmp_path / "secret.csv"
    secret_file.write_text(f"application_id\n{SECRET}\n")
    cfg_path = write_config(tmp_path, src, store)
    return {"cfg_path": cfg_path, "cfg": load_config(cfg_path), "secret_file": secret_file, "src": src}


def _submit(cfg_path: Path, *args: str):
    return runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), "--wait", *args])


def _nothing_leaked(cfg, outputs: Path) -> None:
    """No secret in any output file, the jobs ledger (errors and specs aside: a refused job is never recorded)
    or the job tables."""
    for file in outputs.rglob("*") if outputs.exists() else []:
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file
    if cfg.results.path.exists():
        with duckdb.connect(str(cfg.results.path), read_only=True) as con:
            tables = [r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()]
            for table in tables:
                text = str(con.sql(f'SELECT * FROM "{table}"').fetchall())  # noqa: S608 - test
                assert SECRET not in text, table


PROBES = {
    "file through read_text": "SELECT * FROM read_text('{secret}')",
    "file through read_csv": "SELECT * FROM read_csv('{secret}')",
    "file as a table": "SELECT * FROM '{secret}'",
    "/proc/self/environ": "SELECT l.*, e.content AS leak FROM loan_applications l, read_text('/proc/self/environ') e",
    "glob": "SELECT l.*, g.file AS leak FROM loan_applications l, glob('/*') g",
    "blob in a subquery": "SELECT * FROM loan_applications WHERE application_id IN "
                          "(SELECT length(content) FROM read_blob('{secret}'))",
    "settings": "SELECT *, current_setting('temp_directory') AS leak FROM loan_applications",
    "settings table": "SELECT l.*, s.value AS leak FROM loan_applications l, duckdb_settings() s",
    "databases": "SELECT l.*, d.path AS leak FROM loan_applications l, duckdb_databases() d",
    "environment": "SELECT *, getenv('HOME') AS leak FROM loan_applications",
    "show": "SHOW DATABASES",
    "describe": "DESCRIBE credentials",
    "another table": "SELECT l.*, c.token AS leak FROM loan_applications l, credentials c",
    "another table in a CTE": "WITH c AS (SELECT token FROM credentials) SELECT l.*, c.token FROM loan_applications l, c",
    "a view over it": "SELECT * FROM v_credentials",
    "the catalog": "SELECT * FROM information_schema.tables",
    "sqlite_master": "SELECT * FROM sqlite_master",
    "another database": "SELECT * FROM src.main.credentials",
    "dynamic SQL": "SELECT * FROM query('SELECT * FROM credentials')",
    "attach": "ATTACH '{secret}.db' AS x",
    "copy out": "COPY (SELECT * FROM credentials) TO '{secret}.out'",
    "set": "SET enable_external_access = true",
}


def test_a_query_job_reads_only_allowed_tables(hostile: dict) -> None:
    cfg_path, cfg = hostile["cfg_path"], hostile["cfg"]
    for probe, sql in PROBES.items():
        query = sql.format(secret=hostile["secret_file"])
        res = _submit(cfg_path, "--query", query, "--key", "application_id", "--output", "probe.parquet")
        assert res.exit_code == 1, (probe, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in res.output, (probe, res.output)
        assert SECRET not in res.output, (probe, res.output)
        assert not (cfg.jobs.output_dir / "probe.parquet").exists()
    _nothing_leaked(cfg, cfg.jobs.output_dir)


def test_an_allowed_query_still_scores_and_allowed_tables_widen_the_sandbox(hostile: dict, tmp_path: Path) -> None:
    res = _submit(hostile["cfg_path"], "--query", f"SELECT * FROM main.loan_applications {DAY_FILTER}",
                  "--output", "ok.parquet", "--no-table")
    assert res.exit_code == 0, res.output
    assert (hostile["cfg"].jobs.output_dir / "ok.parquet").is_file()
    # An operator may allow another table; reading it is then allowed, files still are not.
    (tmp_path / "wide").mkdir()
    wide = write_config(tmp_path / "wide", hostile["src"], hostile["cfg"].model.store,
                        jobs={"allowed_tables": ["loan_applications", "credentials"]})
    res = _submit(wide, "--query", "SELECT * FROM credentials")
    assert "may read only" not in res.output, res.output  # allowed now (it then fails the model's columns)
    res = _submit(wide, "--query", f"SELECT * FROM read_text('{hostile['secret_file']}')")
    assert res.exit_code == 1 and "table function 'read_text'" in res.output


def test_errors_of_a_job_never_echo_values(hostile: dict) -> None:
    """A failing cast inside an allowed query: DuckDB's message holds the value; the job's does not."""
    query = f"SELECT * FROM loan_applications {DAY_FILTER} AND CAST(state AS INTEGER) > 0"
    res = _submit(hostile["cfg_path"], "--query", query)
    assert res.exit_code == 1, res.output
    assert SECRET not in res.output and "Conversion Error" in res.output, res.output
    _nothing_leaked(hostile["cfg"], hostile["cfg"].jobs.output_dir)


def test_the_connection_itself_refuses_files_and_settings(hostile: dict) -> None:
    """The second layer: even a statement the parse check let through cannot reach a file or unlock it."""
    con = duck_connect(hostile["src"], read_only=True, sandboxed=True)
    try:
        for sql in (f"SELECT * FROM read_text('{hostile['secret_file']}')", "SELECT * FROM glob('/*')",
                    f"ATTACH '{hostile['secret_file']}.db'"):
            with pytest.raises(duckdb.PermissionException):
                con.execute(sql)
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()


def test_outputs_only_under_the_output_dir(hostile: dict, tmp_path: Path) -> None:
    cfg_path, cfg = hostile["cfg_path"], hostile["cfg"]
    data = tmp_path / "in.parquet"
    with duckdb.connect(str(hostile["src"]), read_only=True) as con:
        con.sql(f"SELECT * FROM loan_applications {DAY_FILTER}").to_parquet(str(data))  # noqa: S608
    out_dir = cfg.jobs.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "published.parquet"
    victim.write_bytes(b"the other model's exported partition")
    (out_dir / "link").symlink_to(victim_dir, target_is_directory=True)
    (out_dir / "file_link.parquet").symlink_to(victim)
    existing = out_dir / "existing.parquet"
    existing.write_bytes(b"yesterday's file")
    refusals = {
        str(victim): "outside jobs.output_dir",
        "../victim/published.parquet": "outside jobs.output_dir",
        str(cfg.results.path.with_name("results_export") / "x.parquet"): "outside jobs.output_dir",
        "link/published.parquet": "symlink",
        "file_link.parquet": "symlink",
        "existing.parquet": "already exists; pass --overwrite",
    }
    for target, why in refusals.items():
        res = _submit(cfg_path, "--input", str(data), "--output", target, "--no-table")
        assert res.exit_code == 1 and why in res.output and len(res.output.strip().splitlines()) == 1, \
            (target, res.output)
    assert victim.read_bytes() == b"the other model's exported partition"
    assert existing.read_bytes() == b"yesterday's file"
    res = _submit(cfg_path, "--input", str(data), "--output", "existing.parquet", "--no-table", "--overwrite")
    assert res.exit_code == 0, res.output
    assert existing.read_bytes()[:4] == b"PAR1"
    assert not list(out_dir.rglob(".*.tmp"))
