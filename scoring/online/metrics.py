"""Prometheus metrics of the service and the stream consumer (``prometheus_client``, one registry).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms). Latency buckets run from
0.5 ms to 10 s: a single-row request on loopback takes about a millisecond, a queue under load much more.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter("scoring_requests_total", "HTTP score requests answered, by status code",
                   ["status"], registry=REGISTRY)
LATENCY = Histogram("scoring_request_latency_seconds", "Time from receiving a score request to answering it",
                    buckets=LATENCY_BUCKETS, registry=REGISTRY)
BATCH_ROWS = Histogram("scoring_batch_rows", "Rows per scored micro-batch", ["origin"],
                       buckets=BATCH_BUCKETS, registry=REGISTRY)
ERRORS = Counter("scoring_errors_total", "Rows or requests refused, by kind (validation, rule, auth, size, ...)",
                 ["kind"], registry=REGISTRY)
ROWS = Counter("scoring_rows_scored_total", "Rows scored, by model version", ["origin", "model_version"],
               registry=REGISTRY)
MODEL_VERSION = Gauge("scoring_model_version", "The model version in service (1 for the one in service)",
                      ["model_name", "model_version"], registry=REGISTRY)
STREAM_LAG = Histogram("scoring_stream_lag_seconds", "Time from an event's stream id to its committed prediction",
                       buckets=LATENCY_BUCKETS, registry=REGISTRY)


def set_model(name: str, version: int, previous: int | None = None) -> None:
    """Mark ``version`` of ``name`` as the one in service (the previous one drops to 0)."""
    if previous is not None:
        MODEL_VERSION.labels(name, str(previous)).set(0)
    MODEL_VERSION.labels(name, str(version)).set(1)
