"""``scoring serve``: the model behind an HTTP endpoint (Starlette on uvicorn).

Why Starlette: it is the ASGI toolkit FastAPI is built on and already in the environment (Airflow 3's API
server runs on FastAPI + uvicorn), so the service adds no dependency tree; the request schema is the
model's own signature, read at run time from the store, which FastAPI's static pydantic models would not
express; and a 422 here names the row, the field and the value (``scoring.online.rows``).

Endpoints:
    POST /v1/score   ``{"rows": [{field: value, ...}, ...]}`` or ``{"row": {...}}`` ->
                     ``{"model_name", "model_version", "request_id", "predictions": [...]}``; each prediction
                     is ``{"score", "label", "predicted_class", "probabilities"}`` or ``{"rejected": {"rule",
                     "column", "value", "reason"}}`` (a per-row rule of the suite), with ``"key"`` (the
                     row's ``source.key_column`` as text) when the row has one; 422 when a row does not
                     fit the signature (``errors`` name row, field and value) or every row is rejected;
                     413 above ``max_body_bytes``; 401 without the bearer token when one is set.
    GET /healthz     the process answers (liveness).
    GET /readyz      a model version is loaded (readiness); 503 before.
    GET /metrics     Prometheus text format (``scoring.online.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from scoring.errors import ConfigError
from scoring.online import metrics
from scoring.online.batching import ON_RULE, Answer, MicroBatcher
from scoring.online.daily import DailyCounts
from scoring.online.loaded import ModelSlot
from scoring.online.rows import RowError
from scoring.online.sinks import Sink, utcnow

if TYPE_CHECKING:
    from scoring.config import Config

logger = logging.getLogger(__name__)

TOKEN_ENV = "SCORING_SERVE_TOKEN"
MAX_ROWS = 1000  # rows per request
OPEN_PATHS = ("/healthz", "/readyz")  # probes answer without the token (they reveal nothing)


class TooLarge(Exception):
    """The request body is larger than the limit."""


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _rows_of(payload: Any) -> list[Any] | str:
    """The request's rows, or what is wrong with the payload's shape."""
    if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
        rows = payload["rows"]
    elif isinstance(payload, dict) and isinstance(payload.get("row"), dict):
        rows = [payload["row"]]
    else:
        return 'expected {"rows": [{...}, ...]} or {"row": {...}}'
    if not rows:
        return "no rows"
    if len(rows) > MAX_ROWS:
        return f"{len(rows)} rows; at most {MAX_ROWS} per request"
    return rows


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(slot: ModelSlot, *, max_batch_size: int = 64, max_wait_ms: float = 0.0,
               token: str | None = None, max_body_bytes: int = 1 << 20, reload_s: float = 5.0,
               log_sink: Sink | None = None, on_rule: str = "reject", daily_sink: Sink | None = None,
               service: str = "serve", daily_flush_s: float = 10.0) -> Starlette:
    """The ASGI application serving ``slot`` (already loaded, or loaded at startup).

    Args:
        slot: the model in service; followed every ``reload_s`` seconds when it tracks an alias.
        max_batch_size: rows per micro-batch at most.
        max_wait_ms: how long a micro-batch waits for more requests after its first (0: never waits).
        token: the bearer token every request but the probes must carry (None: no check).
        max_body_bytes: request bodies above it get 413.
        reload_s: seconds between checks of the alias (0: never).
        log_sink: where to log every scored row (``online_requests``) for ``scoring parity``; None: no log.
        on_rule: ``reject`` (default) a row breaking a per-row rule of the suite, or ``warn``: score it and
            add ``"warning"`` naming the rule to its prediction.
        daily_sink: where the service's daily ledger rows go (``online_daily``, kind ``serve``: rows received,
            scored, rejected by a rule, invalid, per business day and model version), added every
            ``daily_flush_s`` seconds and at shutdown (a killed service loses its last unflushed counts).
        service: this service's name in ``online_daily`` (``host:port`` by default from ``serve``).
    """
    batcher = MicroBatcher(slot, max_batch_size, max_wait_ms, on_rule)
    pending_log: list[tuple[Any, ...]] = []
    daily = DailyCounts("serve", service, slot.cfg.timezone)

    async def flush_daily() -> None:
        rows = daily.drain()
        if daily_sink is not None and rows:
            try:
                await asyncio.to_thread(daily_sink.add_daily, rows)
            except BaseException:
                daily.restore(rows)  # added again at the next flush
                raise

    def count(rows: int, version: int | None = None, **counts: int) -> None:
        loaded = slot.current
        if loaded is not None:
            daily.add(loaded.name, version if version is not None else loaded.version, received=rows, **counts)
    expected = f"Bearer {token}".encode() if token else None

    async def flush_log() -> None:
        if log_sink is None or not pending_log:
            return
        rows = pending_log[:]
        del pending_log[:len(rows)]
        await asyncio.to_thread(log_sink.write_requests, rows)

    async def background() -> None:
        last_reload = last_daily = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            try:
                await flush_log()
                if time.monotonic() - last_daily >= daily_flush_s:
                    last_daily = time.monotonic()
                    await flush_daily()
                if reload_s and time.monotonic() - last_reload >= reload_s:
                    last_reload = time.monotonic()
                    before = slot.current.version if slot.current else None
                    if await asyncio.to_thread(slot.refresh):
                        metrics.set_model(slot.current.name, slot.current.version, before)
            except Exception:  # noqa: BLE001 - a failed flush or check is retried next round
                logger.exception("online background task")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if slot.current is None:
            await asyncio.to_thread(slot.load)
        metrics.set_model(slot.current.name, slot.current.version)
        batcher.start()
        task = asyncio.get_running_loop().create_task(background())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await flush_log()
            await batcher.stop()
            await flush_daily()

    def reply(status: int, body: dict[str, Any], started: float) -> JSONResponse:
        metrics.REQUESTS.labels(str(status)).inc()
        metrics.LATENCY.observe(time.perf_counter() - started)
        return JSONResponse(body, status_code=status)

    async def score(request: Request) -> Response:
        started = time.perf_counter()
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                metrics.ERRORS.labels("auth").inc()
                return reply(401, {"error": "missing or wrong bearer token"}, started)
        try:
            body = await _body(request, max_body_bytes)
        except TooLarge:
            metrics.ERRORS.labels("size").inc()
            return reply(413, {"error": f"request body above {max_body_bytes} bytes"}, started)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            metrics.ERRORS.labels("json").inc()
            return reply(400, {"error": "the body is not JSON"}, started)
        rows = _rows_of(payload)
        if isinstance(rows, str):
            metrics.ERRORS.labels("shape").inc()
            count(1, invalid=1)
            return reply(422, {"error": rows}, started)
        received = utcnow()
        try:
            answer: Answer = await batcher.submit(rows)
        except RowError as exc:
            metrics.ERRORS.labels("validation").inc()
            count(len(rows), invalid=len(rows))
            return reply(422, {"error": str(exc), "errors": [exc.to_json()]}, started)
        except Exception as exc:  # noqa: BLE001 - logged by the batcher; the client gets one line
            metrics.ERRORS.labels("internal").inc()
            return reply(500, {"error": f"scoring failed: {type(exc).__name__}"}, started)
        request_id = uuid.uuid4().hex
        key = slot.cfg.source.key_column  # echoed (as text) when the client sent it, to match answers to rows
        results = [{"key": None if row.get(key) is None else str(row[key]), **result}
                   if isinstance(row, dict) and key in row else result
                   for row, result in zip(rows, answer.results, strict=True)]
        rejected = sum(1 for r in answer.results if "rejected" in r)
        if rejected:
            metrics.ERRORS.labels("rule").inc(rejected)
        metrics.ROWS.labels("http", str(answer.model_version)).inc(len(rows) - rejected)
        count(len(rows), answer.model_version, scored=len(rows) - rejected, rejected=rejected)
        if log_sink is not None:
            for i, (row, result) in enumerate(zip(rows, answer.results, strict=True)):
                probs = result.get("probabilities")
                pending_log.append((request_id, i, "http", received, answer.model_name, answer.model_version,
                                    json.dumps(row), result.get("score"), result.get("label"),
                                    result.get("predicted_class"), json.dumps(probs) if probs else None,
                                    json.dumps(result["rejected"]) if "rejected" in result else None))
        body_out = {"model_name": answer.model_name, "model_version": answer.model_version,
                    "request_id": request_id, "predictions": results}
        return reply(422 if rejected == len(rows) else 200, body_out, started)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        loaded = slot.current
        if loaded is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready", "model_name": loaded.name, "model_version": loaded.version})

    async def metrics_page(request: Request) -> Response:
        if expected is not None and not hmac.compare_digest(
                request.headers.get("authorization", "").encode(), expected):
            return PlainTextResponse("missing or wrong bearer token", status_code=401)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    routes = [Route("/v1/score", score, methods=["POST"]), Route("/healthz", healthz),
              Route("/readyz", readyz), Route("/metrics", metrics_page)]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(cfg: Config, *, host: str = "127.0.0.1", port: int = 8080, alias: str | None = None,
          version: int | None = None, max_batch_size: int = 64, max_wait_ms: float = 0.0,
          max_body_bytes: int = 1 << 20, reload_s: float = 5.0, log_requests: str | None = None,
          on_rule: str = "reject", daily_to: str | None = None) -> None:
    """Load the model and serve it until interrupted (uvicorn, one process). ``daily_to``: the online tables'
    home where the service's daily ledger rows go (``online_daily``; None: not kept).

    Raises:
        ConfigError: bound to a non-loopback address without ``$SCORING_SERVE_TOKEN``; ``on_rule`` unknown.
        ModelStoreError / SuiteError: the model or its suite cannot be loaded.
    """
    import uvicorn

    if on_rule not in ON_RULE:
        raise ConfigError(f"--on-rule-failure {on_rule!r}: use one of {', '.join(ON_RULE)}")
    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise ConfigError(f"--host {host} is reachable from other machines: set {TOKEN_ENV} to a secret token "
                          "(clients send 'Authorization: Bearer <token>') or bind to 127.0.0.1")
    slot = ModelSlot(cfg, alias, version)
    slot.load()
    sink = Sink(log_requests) if log_requests else None
    daily_sink = (sink if daily_to == log_requests else Sink(daily_to)) if daily_to else None
    app = create_app(slot, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, token=token,
                     max_body_bytes=max_body_bytes, reload_s=reload_s, log_sink=sink, on_rule=on_rule,
                     daily_sink=daily_sink, service=f"{socket.gethostname()}:{port}")
    logger.info("serving %s v%s on http://%s:%s (max_batch_size %s, max_wait_ms %s)", cfg.model.name,
                slot.current.version if slot.current else None, host, port, max_batch_size, max_wait_ms)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_keep_alive=30)
