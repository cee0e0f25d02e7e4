"""`scoring serve` as a real process on a free loopback port: exact scores, 422s, limits, token, hot swap,
micro-batching, and parity with the batch path through the request log."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.online.helpers import Server, json_rows, mixed_frame, own_scores, setup_model

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("serve")
    frame = mixed_frame()
    cfg, model = setup_model(folder, frame)
    server = Server(cfg, "--log-requests", "--max-wait-ms", "20", "--max-batch-size", "32")
    try:
        server.wait_ready()
        yield server, cfg, frame, model
    finally:
        server.stop()


def test_rows_score_exactly_the_models_own_output_and_replay_identically_through_the_batch_path(served) -> None:
    server, cfg, frame, model = served
    rows = json_rows(frame)
    expected = own_scores(model, frame)
    # 16 concurrent single-row clients (they coalesce), and one request of 50 rows
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda r: httpx.post(server.url + "/v1/score", json={"row": r}, timeout=60),
                                rows[:250]))
    big = httpx.post(server.url + "/v1/score", json={"rows": rows[250:]}, timeout=60)
    got = []
    for a in answers:
        assert a.status_code == 200, a.text
        body = a.json()
        assert (body["model_name"], body["model_version"]) == ("mixed", 1)
        got.append(body["predictions"][0])
    assert big.status_code == 200
    got += big.json()["predictions"]
    assert len(got) == len(frame)  # rows in = scored (no row of this frame breaks a rule)
    assert [g["key"] for g in got] == list(frame["key"])  # text keys with their leading zeros
    scores = np.array([g["score"] for g in got])
    assert np.abs(scores - expected).max() <= 1e-12
    for g, e in zip(got, expected, strict=True):
        assert g["label"] == int(e >= 0.5)
        assert g["probabilities"]["1"] == pytest.approx(e, abs=1e-12)
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    batches = [line for line in metrics.splitlines() if line.startswith('scoring_batch_rows_count{origin="http"}')]
    assert batches and float(batches[0].split()[-1]) < 251  # concurrent requests coalesced into fewer batches
    assert 'scoring_model_version{model_name="mixed",model_version="1"} 1.0' in metrics

    # parity: the logged rows replayed through the batch reader, the batch gate and the same version
    from scoring.config import load_config
    from scoring.online.parity import replay
    from scoring.online.sinks import Sink, default_target

    loaded = load_config(cfg)
    import time

    deadline = time.monotonic() + 30  # the log is flushed every 0.5 s
    while True:
        report = replay(loaded, Sink(default_target(loaded)), None)
        if report.rows >= len(frame) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert report.rows == len(frame)
    assert report.differences == []
    assert report.max_abs_diff <= 1e-12
    assert report.by_version == {1: len(frame)}


def test_a_row_that_does_not_fit_the_signature_is_a_422_naming_field_and_value(served) -> None:
    server, _cfg, frame, _model = served
    row = json_rows(frame)[0]
    cases = [({**row, "code": 7}, "code", "7"), ({**row, "flag": "yes"}, "flag", '"yes"'),
             ({**row, "visits": 1.5}, "visits", "1.5"), ({k: v for k, v in row.items() if k != "x1"}, "x1", "<missing>")]
    for bad, field, value in cases:
        res = httpx.post(server.url + "/v1/score", json={"rows": [row, bad]}, timeout=30)
        assert res.status_code == 422, res.text
        err = res.json()["errors"][0]
        assert (err["row"], err["field"], err["value"]) == (1, field, value)
    # a category the model never saw: rejected by the rule that batch quarantines with, named
    res = httpx.post(server.url + "/v1/score", json={"row": {**row, "region": "central"}}, timeout=30)
    assert res.status_code == 422
    rejected = res.json()["predictions"][0]["rejected"]
    assert rejected["column"] == "region" and rejected["value"] == "central"
    assert rejected["rule"] == "expect_column_values_to_be_in_set"
    # a non-nullable input sent as null: the suite's not-null rule
    res = httpx.post(server.url + "/v1/score", json={"rows": [row, {**row, "code": None}]}, timeout=30)
    assert res.status_code == 200
    assert res.json()["predictions"][1]["rejected"]["rule"] == "expect_column_values_to_not_be_null"
    assert "score" in res.json()["predictions"][0]
    assert httpx.post(server.url + "/v1/score", content=b"{not json", timeout=30).status_code == 400
    assert httpx.post(server.url + "/v1/score", json={"rows": []}, timeout=30).status_code == 422
    huge = json.dumps({"rows": [row] * 20_000}).encode()  # > 1 MiB
    assert httpx.post(server.url + "/v1/score", content=huge, timeout=30).status_code == 413
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    ready = httpx.get(server.url + "/readyz", timeout=10).json()
    assert ready == {"status": "ready", "model_name": "mixed", "model_version": 1}


def test_promotion_swaps_the_model_without_mixing_versions(tmp_path: Path) -> None:
    import joblib  # noqa: F401 - the model files are written by setup_model

    from scoring.models.store import ModelStore
    from tests.online.helpers import fit, setup_model

    frame = mixed_frame()
    cfg, v1 = setup_model(tmp_path, frame)
    server = Server(cfg, "--reload-s", "0.2")
    try:
        server.wait_ready()
        rows = json_rows(frame)
        v2 = fit(frame, c=0.02)
        setup_model(tmp_path, frame, c=0.02)  # registers v2 and points champion at it
        assert ModelStore(tmp_path / "models").aliases("mixed")["champion"] == 2
        own = {1: own_scores(v1, frame), 2: own_scores(v2, frame)}
        seen: set[int] = set()
        import time

        deadline = time.monotonic() + 60
        while 2 not in seen and time.monotonic() < deadline:
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda i: (i, httpx.post(server.url + "/v1/score",
                                                                 json={"rows": rows[i:i + 5]}, timeout=60)),
                                        range(0, 200, 5)))
            for i, res in answers:
                assert res.status_code == 200
                body = res.json()
                version = body["model_version"]
                seen.add(version)
                scores = np.array([p["score"] for p in body["predictions"]])
                # every row of a response is the named version's own output, never the other's
                assert np.abs(scores - own[version][i:i + 5]).max() <= 1e-12
        assert 2 in seen
        assert httpx.get(server.url + "/readyz", timeout=10).json()["model_version"] == 2
    finally:
        server.stop()


def test_bearer_token_and_loopback_default(tmp_path: Path) -> None:
    import subprocess
    import sys

    frame = mixed_frame(120)
    cfg, _ = setup_model(tmp_path, frame)
    res = subprocess.run([sys.executable, "-m", "scoring.cli", "serve", "-c", str(cfg), "--host", "0.0.0.0",
                          "--port", "1"], capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in __import__("os").environ.items() if k != "SCORING_SERVE_TOKEN"})
    assert res.returncode == 1
    assert "SCORING_SERVE_TOKEN" in res.stderr and "Traceback" not in res.stderr
    server = Server(cfg, env={"SCORING_SERVE_TOKEN": "s3cret"})
    try:
        server.wait_ready()  # probes answer without the token
        row = json_rows(frame)[0]
        assert httpx.post(server.url + "/v1/score", json={"row": row}, timeout=30).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.post(server.url + "/v1/score", json={"row": row}, headers=wrong, timeout=30).status_code == 401
        assert httpx.get(server.url + "/metrics", timeout=30).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(server.url + "/v1/score", json={"row": row}, headers=good, timeout=30).status_code == 200
    finally:
        server.stop()


def test_the_service_keeps_a_daily_ledger_row_shown_by_scoring_runs(tmp_path: Path) -> None:
    """Per day and model version: rows received = scored + rejected + invalid, written at shutdown (SIGTERM)
    to ``online_daily`` next to the results, and listed by ``scoring runs`` within 80 columns."""
    import datetime as dt
    import os
    import subprocess
    import sys

    from scoring.config import load_config
    from scoring.online.sinks import Sink, default_target
    from tests.online.helpers import Server

    frame = mixed_frame(60)
    cfg, model = setup_model(tmp_path, frame)
    rows = json_rows(frame)
    server = Server(cfg)
    try:
        server.wait_ready()
        good = httpx.post(server.url + "/v1/score", json={"rows": rows[:40]}, timeout=60)
        assert good.status_code == 200
        scores = np.array([p["score"] for p in good.json()["predictions"]])
        assert np.abs(scores - own_scores(model, frame)[:40]).max() <= 1e-12
        bad = httpx.post(server.url + "/v1/score", json={"rows": [rows[40], {**rows[41], "code": 7}]}, timeout=60)
        assert bad.status_code == 422
        assert httpx.post(server.url + "/v1/score", json={"rows": 7}, timeout=60).status_code == 422
    finally:
        server.stop()
    # uvicorn shuts down gracefully on SIGTERM (the lifespan writes the counts), then re-raises the signal
    assert server.proc.returncode in (0, -15), server.log.read_text()[-2000:]
    daily = Sink(default_target(load_config(cfg))).read_daily()
    assert len(daily) == 1, daily
    row = daily[0]
    assert (row["kind"], row["model_name"], row["model_version"]) == ("serve", "mixed", 1)
    assert (row["received"], row["scored"], row["rejected"], row["invalid"]) == (43, 40, 0, 3)
    assert abs((row["day"] - dt.datetime.now(dt.UTC).date()).days) <= 1  # the business day in its zone
    res = subprocess.run([sys.executable, "-m", "scoring.cli", "runs", "-c", str(cfg)], capture_output=True,
                         text=True, timeout=300, cwd=cfg.parent, env={**os.environ, "COLUMNS": "80"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "online, per day" in res.stdout and "mixed v1" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 80, res.stdout
