"""On-demand jobs, embedded engine: submitted with the CLI, processed by ``scoring jobs work`` on the one
scoring path; scores equal the model's own output; failures are one line and do not stop the others."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.models.store import ModelStore
from tests.conftest import SCORE_DAY
from tests.helpers import source_day

runner = CliRunner()
DAYS = {"parquet": SCORE_DAY, "csv": SCORE_DAY - dt.timedelta(days=1), "query": SCORE_DAY - dt.timedelta(days=2)}


def _invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout


def _submit(cfg_path: Path, *args: str) -> str:
    code, out = _invoke("jobs", "submit", "--config", str(cfg_path), *args)
    assert code == 0, out
    return out.strip().splitlines()[-1]


def _status(cfg_path: Path, job_id: str) -> tuple[int, dict]:
    code, out = _invoke("jobs", "status", job_id, "--config", str(cfg_path), "--json")
    return code, json.loads(out)


def _write_inputs(tmp_path: Path, sample_db: Path) -> dict[str, Path]:
    parquet, csv, narrow = tmp_path / "in" / "day.parquet", tmp_path / "in" / "day.csv", tmp_path / "in" / "narrow.parquet"
    parquet.parent.mkdir()
    source_day(sample_db, DAYS["parquet"]).to_parquet(parquet, index=False)
    source_day(sample_db, DAYS["csv"]).to_csv(csv, index=False)
    source_day(sample_db, DAYS["parquet"]).drop(columns=["credit_score"]).to_parquet(narrow, index=False)
    return {"parquet": parquet, "csv": csv, "narrow": narrow}


def _expected(cfg, sample_db: Path, day: dt.date) -> dict[str, float]:
    store = ModelStore(cfg.model.store)
    model = store.load(store.resolve(cfg.model.name, "champion"))
    src = source_day(sample_db, day)
    return dict(zip(src["application_id"].astype(str), model.predict_proba(src)[:, 1], strict=True))


def test_three_jobs_score_like_the_model_and_three_bad_ones_fail_in_one_line(
        tmp_path: Path, cfg_path: Path, sample_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(cfg_path)
    files = _write_inputs(tmp_path, sample_db)
    start = dt.datetime.combine(DAYS["query"], dt.time())
    good = {
        "parquet": _submit(cfg_path, "--input", str(files["parquet"]), "--output", "p.parquet"),
        "csv": _submit(cfg_path, "--input", str(files["csv"]), "--output", "sub/c.csv"),
        "query": _submit(cfg_path, "--query", "SELECT * FROM loan_applications WHERE applied_at >= $start::TIMESTAMP "
                         "AND applied_at < $end::TIMESTAMP", "--param", f"start={start}",
                         "--param", f"end={start + dt.timedelta(days=1)}"),
    }
    bad = {
        "missing column": _submit(cfg_path, "--input", str(files["narrow"])),
    }
    for job_id in [*good.values(), *bad.values()]:
        code, row = _status(cfg_path, job_id)
        assert (code, row["state"]) == (0, "queued")

    # Each job is running (claimed, counted) when it publishes; watch the state the ledger shows then.
    import scoring.run.job_runs as job_runs

    seen: dict[str, str] = {}
    publish = job_runs.publish_job

    def watching(cfg_, ledger, job, *args, **kwargs):
        seen[job["job_id"]] = ledger.get(job["job_id"])["state"]
        return publish(cfg_, ledger, job, *args, **kwargs)

    monkeypatch.setattr(job_runs, "publish_job", watching)
    res = runner.invoke(app, ["jobs", "work", "--config", str(cfg_path)])
    assert res.exit_code == 1, res.stdout  # some jobs failed
    assert seen == dict.fromkeys(good.values(), "running")

    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        table = con.sql("SELECT * FROM job_predictions ORDER BY job_id, source_key").to_df()
        quarantine = con.sql("SELECT job_id, count(*) AS n FROM job_quarantine GROUP BY job_id").to_df()
    for kind, job_id in good.items():
        code, row = _status(cfg_path, job_id)
        assert (code, row["state"], row["error"]) == (0, "succeeded", None), row
        assert row["rows_in"] == row["rows_scored"] + row["rows_quarantined"] > 0
        assert row["chunks_done"] == row["chunks_total"] >= 1
        expected = _expected(cfg, sample_db, DAYS[kind])
        assert row["rows_in"] == len(expected)
        published = table[table["job_id"] == job_id]
        assert len(published) == row["rows_scored"]
        assert int(quarantine.set_index("job_id")["n"].get(job_id, 0)) == row["rows_quarantined"]
        for key, score in zip(published["source_key"], published["score"], strict=True):
            assert abs(score - expected[key]) <= 1e-9, (kind, key)
        assert set(published["model_version"]) == {1} and set(published["job_id"]) == {job_id}
        if row["output"]:
            out = Path(row["output"])
            frame = pq.read_table(out).to_pandas() if out.suffix == ".parquet" else pd.read_csv(out, dtype={"source_key": str})
            assert len(frame) == row["rows_scored"]
            merged = frame.merge(published, on="source_key", suffixes=("", "_t"))
            assert len(merged) == len(frame) and (merged["score"] - merged["score_t"]).abs().max() <= 1e-9
            assert set(frame["job_id"]) == {job_id}

    for args, why in ((("--input", str(tmp_path / "nowhere.parquet")), "not found"),
                      (("--query", "DELETE FROM loan_applications"), "must be a SELECT statement, got DELETE")):
        res = runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), *args])
        assert res.exit_code == 1 and why in res.output and len(res.output.strip().splitlines()) == 1, res.output
    reasons = {
               "missing column": "credit_score"}
    for what, job_id in bad.items():
        code, row = _status(cfg_path, job_id)
        assert (code, row["state"]) == (1, "failed"), row
        assert reasons[what] in row["error"] and "\n" not in row["error"], row["error"]
        assert (table["job_id"] == job_id).sum() == 0


def test_cancel_a_queued_job_refuse_unsafe_outputs_and_wait(tmp_path: Path, cfg_path: Path, sample_db: Path) -> None:
    cfg = load_config(cfg_path)
    files = _write_inputs(tmp_path, sample_db)
    job_id = _submit(cfg_path, "--input", str(files["parquet"]))
    code, out = _invoke("jobs", "cancel", job_id, "--config", str(cfg_path), "--json")
    assert json.loads(out)["state"] == "cancelled"
    code, out = _invoke("jobs", "work", "--config", str(cfg_path))
    assert code == 0 and "no queued jobs" in out
    assert _status(cfg_path, job_id)[0] == 2

    for target, why in ((cfg.results.path, "must be Parquet"), (cfg.model.store / "x.parquet", "outside"),
                        (tmp_path / "nowhere.parquet", "outside")):
        res = runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), "--input", str(files["parquet"]),
                                  "--output", str(target)])
        assert res.exit_code == 1 and why in res.output and len(res.output.strip().splitlines()) == 1, res.output

    # --wait processes it here; the CSV output and the table agree; --no-table publishes only the file.
    res = runner.invoke(app, ["jobs", "submit", "--config", str(cfg_path), "--input", str(files["parquet"]),
                              "--output", "o.csv", "--no-table", "--wait", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["state"] == "succeeded" and row["rows_in"] == row["rows_scored"] + row["rows_quarantined"]
    assert len(pd.read_csv(cfg.jobs.output_dir / "o.csv")) == row["rows_scored"]
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM job_predictions WHERE job_id = $1", params=[row["job_id"]]).fetchall()[0][0] == 0
    code, out = _invoke("jobs", "list", "--config", str(cfg_path), "--state", "succeeded", "--json")
    assert [r["job_id"] for r in json.loads(out)] == [row["job_id"]]


def test_a_killed_worker_leaves_its_job_interrupted_cancel_ends_it_and_a_resubmit_succeeds(
        tmp_path: Path, sample_db: Path, store: Path) -> None:
    """``scoring jobs work`` SIGKILLed after a job's chunk 3 (of 12): without any other worker, ``jobs cancel``
    ends that job ``cancelled`` and ``jobs status`` shows the next killed one ``interrupted`` (naming the dead
    process, exit 1); nothing of either is published; the same job submitted again succeeds with the model's
    own scores."""
    import os
    import subprocess
    import sys

    from tests.conftest import write_config

    root = Path(__file__).resolve().parents[2]
    cfg_path = write_config(tmp_path, sample_db, store, chunking={"rows_per_chunk": 50})
    cfg = load_config(cfg_path)
    data = tmp_path / "day.parquet"
    source_day(sample_db, SCORE_DAY).to_parquet(data, index=False)
    first, second = (_submit(cfg_path, "--input", str(data), "--model", "loan_default") for _ in range(2))
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "SCORING_FAULT": "after_chunk_3"}

    def killed_worker() -> None:
        proc = subprocess.run([sys.executable, "-m", "scoring.cli", "jobs", "work", "--config", str(cfg_path)],
                              env=env, cwd=root, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILL: the worker could not say anything

    killed_worker()
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        state, done, total = con.execute("SELECT state, chunks_done, chunks_total FROM jobs WHERE job_id = ?",
                                         [first]).fetchone()
    assert (state, total) == ("running", 12) and 3 <= done < 12  # what the killed worker left behind
    code, out = _invoke("jobs", "cancel", first, "--config", str(cfg_path), "--json")
    assert code == 0 and json.loads(out)["state"] == "cancelled", out
    killed_worker()  # takes the second job (the first is cancelled) and dies in it too
    code, row = _status(cfg_path, second)
    assert code == 1 and row["state"] == "interrupted", row
    assert "is gone" in row["error"] and "submit it again" in row["error"] and row["rows_scored"] == 0
    assert _status(cfg_path, first)[1]["state"] == "cancelled"
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM job_predictions").fetchone()[0] == 0
    again = _submit(cfg_path, "--input", str(data), "--model", "loan_default")
    assert _invoke("jobs", "work", "--config", str(cfg_path))[0] == 0
    code, row = _status(cfg_path, again)
    assert code == 0 and row["state"] == "succeeded" and row["rows_in"] == 600, row
    assert row["rows_in"] == row["rows_scored"] + row["rows_quarantined"]
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        got = dict(con.execute("SELECT source_key, score FROM job_predictions WHERE job_id = ?", [again]).fetchall())
    expected = _expected(cfg, sample_db, SCORE_DAY)
    assert len(got) == row["rows_scored"] and all(abs(got[k] - expected[k]) <= 1e-9 for k in got)


class _Airflow:
    """The Airflow REST server's side of a job (``run.airflow_api.AirflowApi``'s calls), recorded; ``refuse``
    makes ``trigger`` fail as an unreachable server does."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse, self.triggered, self.failed = refuse, [], []

    def trigger(self, run_id: str, conf: dict) -> dict:
        if self.refuse:
            from scoring.run.airflow_api import AirflowApiError

            raise AirflowApiError("Airflow REST API unreachable: connection refused")
        self.triggered.append((run_id, conf))
        return {"dag_run_id": run_id}

    def run_state(self, run_id: str) -> str:
        return "running"

    def fail_run(self, run_id: str) -> None:
        self.failed.append(run_id)


def test_an_airflow_job_the_queue_cannot_trigger_or_that_is_cancelled_ends_through_the_engines_failure_path(
        tmp_path: Path, cfg_path: Path, sample_db: Path) -> None:
    from scoring.run.airflow_api import AirflowApiError
    from scoring.run.jobs import JobSpec, cancel, job_status, submit

    cfg = load_config(cfg_path)
    files = _write_inputs(tmp_path, sample_db)
    with pytest.raises(AirflowApiError):
        submit(cfg, JobSpec(model="loan_default", input=str(files["parquet"])), api=_Airflow(refuse=True))
    ledger = duckdb.connect(str(cfg.results.path), read_only=True)
    refused = ledger.sql("SELECT state, error FROM jobs").fetchall()
    ledger.close()
    assert refused == [("failed", "Airflow REST API unreachable: connection refused")]

    api = _Airflow()
    row = submit(cfg, JobSpec(model="loan_default", input=str(files["parquet"])), api=api)
    assert row["state"] == "queued" and api.triggered == [(f"job__{row['job_id']}", {"job_id": row["job_id"],
                                                                                      "config": None})]
    assert job_status(cfg, row["job_id"], api=api)["airflow_state"] == "running"
    assert cancel(cfg, row["job_id"], api=api) == "cancelled"
    assert api.failed == [f"job__{row['job_id']}"]
    ended = job_status(cfg, row["job_id"], api=api)
    assert ended["state"] == "cancelled" and "marked failed" in ended["error"]


def test_an_airflow_job_publishes_with_the_version_its_chunks_were_staged_with(
        tmp_path: Path, cfg_path: Path, sample_db: Path, store: Path) -> None:
    """The job's tasks stage (``score_job``) and publish (``publish_job``) apart; a promotion between them
    does not move the job to the new champion: the ledger and the published rows name the version that
    scored them, and every score is that version's own."""
    from dataclasses import asdict

    from scoring.run.job_runs import airflow_publish, airflow_stage
    from scoring.run.jobs import JobSpec, ledger_for
    from tests.run.test_business_days import _register_v2

    cfg = load_config(cfg_path)
    files = _write_inputs(tmp_path, sample_db)
    _register_v2(store)  # v2: champion only after the chunks are staged
    ledger = ledger_for(cfg)
    spec = JobSpec(model="loan_default", input=str(files["parquet"]))
    ledger.add("staged-v1", "airflow", spec.model, asdict(spec))
    staged = airflow_stage(cfg, "staged-v1")
    assert ledger.get("staged-v1")["model_version"] == 1 and staged["rows_in"] > 0
    ModelStore(store).set_alias("loan_default", "champion", 2)
    published = airflow_publish(cfg, "staged-v1")
    assert published["state"] == "succeeded"
    row = ledger.get("staged-v1")
    assert row["state"] == "succeeded" and row["model_version"] == 1
    with duckdb.connect(str(cfg.results.path), read_only=True) as con:
        got = con.sql("SELECT source_key, score, model_version FROM job_predictions WHERE job_id = 'staged-v1'").df()
    assert set(got["model_version"]) == {1}
    assert row["rows_in"] == row["rows_scored"] + row["rows_quarantined"] == staged["rows_in"]
    mv1 = ModelStore(store).get("loan_default", 1)
    src = source_day(sample_db, DAYS["parquet"])
    own = dict(zip(src["application_id"].astype(str), ModelStore(store).load(mv1).predict_proba(src)[:, 1],
                   strict=True))
    assert len(got) == row["rows_scored"] and max(abs(s - own[k]) for k, s in zip(got["source_key"], got["score"],
                                                                                  strict=True)) <= 1e-9
