"""Run notes (``scoring.run.run_notes``) from the DAG's task functions, against a small HTTP server on a free
loopback port that answers the Airflow REST API v2 calls the notes make (token, GET and PATCH of a DAG run).
The real api-server is exercised by ``tests/dags/test_jobs_airflow.py`` (slow); here: the texts from a real
plan and publish of the sample day, a person's note kept, and every way the API can fail leaving the task
unharmed (no settings, refused, unreachable, an API slower than the notes' timeout)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.run import run_notes, tasks
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, source_day

RUN = ("scoring_loan_default", "manual__1")


class FakeApi(ThreadingHTTPServer):
    """Keeps one DAG run's note; ``status`` other than 200 answers every call with that status; ``delay_s``
    sleeps before answering."""

    block_on_close = False  # teardown does not wait for a handler still sleeping in the slow-API case

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.note: str | None = None
        self.status = 200
        self.delay_s = 0.0
        self.calls: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self, body: dict) -> None:
        time.sleep(self.server.delay_s)
        data = json.dumps(body if self.server.status == 200 else {"detail": "refused"}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - /auth/token
        self.server.calls.append(("POST", self.path))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer({"access_token": "t"})

    def do_GET(self) -> None:  # noqa: N802
        self.server.calls.append(("GET", self.path))
        self._answer({"dag_run_id": RUN[1], "note": self.server.note})

    def do_PATCH(self) -> None:  # noqa: N802
        self.server.calls.append(("PATCH", self.path))
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if self.server.status == 200 and self.path.endswith("?update_mask=note"):
            self.server.note = body["note"]
        self._answer({"dag_run_id": RUN[1], "note": self.server.note})


@pytest.fixture()
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SCORING_AIRFLOW_URL", server.url)
    monkeypatch.setenv("SCORING_AIRFLOW_USERNAME", "admin")
    monkeypatch.setenv("SCORING_AIRFLOW_PASSWORD", "not-a-secret")
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_dag_tasks_note_the_business_day_then_what_was_published(tmp_path: Path, sample_db: Path,
                                                                        trained_store: Path, api: FakeApi) -> None:
    cfg = load_config(write_config(tmp_path, sample_db, trained_store, chunking={"rows_per_chunk": 150}))
    pushed: list[dict] = []
    fanout = tasks.plan_and_validate(cfg, DataInterval.for_day(SCORE_DAY), pushed.append, key=RUN[1],
                                     airflow_run=RUN)
    planned = pushed[0]
    rows = len(source_day(sample_db, SCORE_DAY))
    assert api.note == f"Business day {SCORE_DAY} (UTC): loan_default v1, {rows:,} rows in 4 chunk(s)"
    assert ("PATCH", f"/api/v2/dags/{RUN[0]}/dagRuns/{RUN[1]}?update_mask=note") in api.calls

    chunks = [tasks.score_chunk(cfg, planned, i) for i in fanout]
    counts = tasks.publish(cfg, planned, chunks, airflow_run=RUN)
    row = ledger(cfg.results.path).iloc[-1]
    assert row["status"] == "success" and row["rows_in"] == row["rows_scored"] + row["rows_rejected"] == rows
    assert api.note == (f"Business day {SCORE_DAY} (UTC): loan_default v1 published {row['rows_scored']:,} scored, "
                        f"{row['rows_rejected']:,} quarantined (run {row['run_id']})")
    assert counts["run_id"] == row["run_id"]

    # A note a person wrote is kept.
    api.note = "rerun after the source fix"
    assert not run_notes.note_run(*RUN, "Business day overwritten")
    assert api.note == "rerun after the source fix"


def test_texts_of_a_failed_and_a_superseded_run() -> None:
    assert run_notes.failed_note("2026-03-07", "Europe/Paris", {"failed": ["publish"], "run_id": "r1"}) == \
        "Business day 2026-03-07 (Europe/Paris): failed (publish); ledger run r1"
    assert run_notes.failed_note("2026-03-07", "UTC", {"failed": []}) == \
        "Business day 2026-03-07 (UTC): failed (see the task logs)"
    superseded = {"day": "2026-03-07", "model_name": "m", "model_version": 2, "status": "superseded",
                  "note": "run r2 of the day published first"}
    assert run_notes.published_note(superseded, "UTC") == \
        "Business day 2026-03-07 (UTC): m v2 not published: run r2 of the day published first"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_note_never_fails_the_task(api: FakeApi, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    assert run_notes.note_run(*RUN, "Business day 2026-03-07 (UTC): m v1")  # the API works
    api.status = 500
    assert not run_notes.note_run(*RUN, "Business day 2026-03-07 (UTC): m v2")
    assert api.note == "Business day 2026-03-07 (UTC): m v1"
    assert "could not set the note of run manual__1" in caplog.text and "HTTP 500" in caplog.text
    api.status = 200

    def broken() -> str:
        raise ValueError()  # an empty message: the warning names the type

    caplog.clear()
    assert not run_notes.note_run(*RUN, broken)
    assert "ValueError" in caplog.text

    api.delay_s = run_notes.NOTE_TIMEOUT_S + 2  # slower than the notes' timeout: given up after it
    started = time.monotonic()
    assert not run_notes.note_run(*RUN, "Business day 2026-03-07 (UTC): m v3")
    assert time.monotonic() - started < 3 * run_notes.NOTE_TIMEOUT_S
    api.delay_s = 0.0

    monkeypatch.setenv("SCORING_AIRFLOW_URL", f"http://127.0.0.1:{_closed_port()}")  # unreachable
    assert not run_notes.note_run(*RUN, "Business day 2026-03-07 (UTC): m v4")
    monkeypatch.delenv("SCORING_AIRFLOW_URL")  # not configured: nothing is called, the note is not even made
    calls, made = len(api.calls), []
    assert not run_notes.note_run(*RUN, lambda: made.append(1) or "Business day 2026-03-07 (UTC): m v5")
    assert len(api.calls) == calls and made == []
