"""Query jobs on a PostgreSQL source, through the real CLI on the real server: the query runs as the role of
``jobs.postgres_url`` (checked per job: not a superuser, no file-reading role, SELECT on the allowed tables
only), in a READ ONLY transaction with ``statement_timeout``; its plan may scan only the allowed tables. An
allowed query scores like the model's own predict; every probe is refused in one line without leaking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
import yaml
from psycopg import sql
from typer.testing import CliRunner

from scoring.cli import app
from scoring.models.store import ModelStore
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import source_day
from tests.storage.pg_helpers import copy_sample, pg_execute

runner = CliRunner()
SECRET = "TOPSECRET-pg-51c2"
DAY = f"WHERE applied_at >= TIMESTAMPTZ '{SCORE_DAY} 00:00+00' AND applied_at < TIMESTAMPTZ '{SCORE_DAY} 00:00+00' + INTERVAL '1 day'"


def _role_url(pg_url: str, role: str) -> str:
    rest = pg_url.split("://", 1)[1].split("@", 1)[-1]
    return f"postgresql://{role}@{rest}"


@pytest.fixture()
def pg_jobs(pg_url: str, pg_schema: str, tmp_path: Path, sample_db: Path, store: Path):
    """The sample in ``<schema>.loan_applications``, a ``credentials`` table beside it, and a login role that
    may SELECT loan_applications only (dropped afterwards)."""
    copy_sample(sample_db, pg_url, pg_schema)
    role = f"{pg_schema}_jobs"
    ident = sql.Identifier(role)
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(sql.SQL("CREATE TABLE {}.credentials (token text)").format(sql.Identifier(pg_schema)))
        con.execute(sql.SQL("INSERT INTO {}.credentials VALUES (%s)").format(sql.Identifier(pg_schema)), [SECRET])
        # a value of the allowed table (on a day the scoring test does not read) that a failing cast would echo
        con.execute(sql.SQL("UPDATE {}.loan_applications SET state = %s WHERE application_id = (SELECT "
                            "min(application_id) FROM {}.loan_applications WHERE applied_at < %s)").format(
            sql.Identifier(pg_schema), sql.Identifier(pg_schema)), [SECRET, SCORE_DAY])
        con.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        con.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(pg_schema), ident))
        con.execute(sql.SQL("GRANT SELECT ON {}.loan_applications TO {}").format(sql.Identifier(pg_schema), ident))
    source = {"kind": "postgres", "url": pg_url, "path": None, "table": f"{pg_schema}.loan_applications"}
    cfg_path = write_config(tmp_path, sample_db, store, source=source,
                            jobs={"postgres_url": _role_url(pg_url, role), "statement_timeout_s": 2})
    yield {"cfg_path": cfg_path, "schema": pg_schema, "role": role, "url": pg_url, "tmp": tmp_path,
           "sample_db": sample_db, "store": store}
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        con.execute(sql.SQL("DROP ROLE {}").format(ident))


def _submit(cfg_path: Path, *args: str):
    return runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), "--wait", *args])


def test_an_allowed_query_scores_like_the_model_as_the_read_only_role(pg_jobs: dict) -> None:
    res = _submit(pg_jobs["cfg_path"], "--json", "--query",
                  f"SELECT * FROM {pg_jobs['schema']}.loan_applications {DAY}")
    assert res.exit_code == 0, res.output
    job = json.loads(res.stdout)
    assert job["state"] == "succeeded", job
    assert job["rows_in"] == job["rows_scored"] + job["rows_quarantined"] and job["rows_scored"] > 0
    cfg = yaml.safe_load(pg_jobs["cfg_path"].read_text())
    import duckdb

    with duckdb.connect(cfg["results"]["path"], read_only=True) as con:
        pub = con.sql("SELECT source_key, score FROM job_predictions WHERE job_id = $1",
                      params=[job["job_id"]]).df()
    model_store = ModelStore(pg_jobs["store"])
    model = model_store.load(model_store.resolve("loan_default", "champion"))
    src = source_day(pg_jobs["sample_db"], SCORE_DAY)
    own = dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))
    assert len(pub) == job["rows_scored"]
    assert np.abs(pub["score"].to_numpy() - np.array([own[k] for k in pub["source_key"]])).max() <= 1e-9


PROBES = {
    "another table": "SELECT l.*, c.token AS leak FROM {s}.loan_applications l, {s}.credentials c",
    "a server file": "SELECT l.*, pg_read_file('/etc/hostname') AS leak FROM {s}.loan_applications l",
    "settings": "SELECT l.*, current_setting('data_directory') AS leak FROM {s}.loan_applications l",
    "the settings view": "SELECT l.*, s.setting AS leak FROM {s}.loan_applications l, pg_settings s",
    "dynamic SQL": "SELECT l.*, query_to_xml('SELECT * FROM {s}.credentials', true, false, '') AS leak "
                   "FROM {s}.loan_applications l",
    "the catalog": "SELECT l.*, a.rolname AS leak FROM {s}.loan_applications l, pg_catalog.pg_roles a",
    "a write": "DELETE FROM {s}.loan_applications",
    "error channel": "SELECT * FROM {s}.loan_applications WHERE CAST(state AS integer) > 0",
}


def test_probes_are_refused_in_one_line_without_leaking(pg_jobs: dict) -> None:
    for probe, text in PROBES.items():
        res = _submit(pg_jobs["cfg_path"], "--query", text.format(s=pg_jobs["schema"]))
        assert res.exit_code != 0, (probe, res.output)
        lines = res.output.strip().splitlines()
        # refused at submit: one line; refused by the worker: the failed job's line and its one error line
        assert len(lines) == 1 or (len(lines) == 2 and " failed " in lines[0]), (probe, res.output)
        assert "Traceback" not in res.output and SECRET not in res.output, (probe, res.output)
    # the one probe that gets past DuckDB's parse (query_to_xml is no revealing name) is stopped by PostgreSQL
    res = _submit(pg_jobs["cfg_path"], "--query", PROBES["dynamic SQL"].format(s=pg_jobs["schema"]))
    assert "permission denied" in res.output, res.output
    res = _submit(pg_jobs["cfg_path"], "--query", PROBES["error channel"].format(s=pg_jobs["schema"]))
    assert "invalid input syntax for type integer" in res.output, res.output  # the value itself redacted
    cfg = yaml.safe_load(pg_jobs["cfg_path"].read_text())
    import duckdb

    with duckdb.connect(cfg["results"]["path"], read_only=True) as con:
        for (table,) in con.sql("SELECT table_name FROM duckdb_tables()").fetchall():
            assert SECRET not in str(con.sql(f'SELECT * FROM "{table}"').fetchall()), table  # noqa: S608


def test_a_role_that_can_read_more_is_refused_and_a_slow_query_times_out(pg_jobs: dict) -> None:
    s, role = pg_jobs["schema"], pg_jobs["role"]
    pg_execute(pg_jobs["url"], sql.SQL("GRANT SELECT ON {}.credentials TO {}").format(
        sql.Identifier(s), sql.Identifier(role)).as_string())
    res = _submit(pg_jobs["cfg_path"], "--query", f"SELECT * FROM {s}.loan_applications {DAY}")
    assert res.exit_code != 0 and f"can read {s}.credentials" in res.output, res.output
    pg_execute(pg_jobs["url"], sql.SQL("REVOKE SELECT ON {}.credentials FROM {}").format(
        sql.Identifier(s), sql.Identifier(role)).as_string())

    # The source's own (superuser) connection is never the job's: pointing jobs.postgres_url at it is refused.
    tmp = pg_jobs["tmp"] / "su"
    tmp.mkdir()
    su = write_config(tmp, pg_jobs["sample_db"], pg_jobs["store"],
                      source={"kind": "postgres", "url": pg_jobs["url"], "path": None,
                              "table": f"{s}.loan_applications"},
                      jobs={"postgres_url": pg_jobs["url"]})
    res = _submit(su, "--query", f"SELECT * FROM {s}.loan_applications {DAY}")
    assert res.exit_code != 0 and "superuser" in res.output, res.output
    tmp = pg_jobs["tmp"] / "none"
    tmp.mkdir()
    none = write_config(tmp, pg_jobs["sample_db"], pg_jobs["store"],
                        source={"kind": "postgres", "url": pg_jobs["url"], "path": None,
                                "table": f"{s}.loan_applications"})
    res = _submit(none, "--query", f"SELECT * FROM {s}.loan_applications {DAY}")
    assert res.exit_code != 0 and "jobs.postgres_url" in res.output, res.output

    slow = (f"SELECT l.* FROM {s}.loan_applications l WHERE (SELECT count(*) FROM generate_series(1, 100000000)) > 0")
    res = _submit(pg_jobs["cfg_path"], "--query", slow)
    assert res.exit_code != 0 and "statement timeout" in res.output, res.output
