"""Online wing: the model served over HTTP and scored from a Redis stream, on the batch path's own steps.

- ``rows``: JSON rows -> the Arrow table of the model's feature schema; a wrong type or a missing input is a
  ``RowError`` naming the field and the value (the service answers 422).
- ``loaded``: the model version in service (alias or pinned version), its gate and score spec; swapped
  whole on promotion, so a micro-batch is scored by exactly one version.
- ``batching``: adaptive micro-batching of concurrent requests (``max_batch_size``, ``max_wait_ms``).
- ``app``: the Starlette ASGI application (``scoring serve``): /v1/score, /healthz, /readyz, /metrics.
- ``metrics``: the Prometheus metrics of the service and the consumer.
- ``sinks``: the ``online_requests`` log and the idempotent ``stream_predictions`` table (DuckDB or PostgreSQL).
- ``stream``: the Redis stream consumer (``scoring stream``): consumer group, XAUTOCLAIM, dead letters.
- ``parity``: ``scoring parity``: logged requests and stream events replayed through the batch reader and gate.

A micro-batch is scored by ``scoring.run.chunks.gate_and_score``, the function every batch chunk goes
through: the same gate, the same contract conversion, the same model call.

May import: ``run``, ``quality``, ``models``, ``storage`` and the ground floor. Only ``cli`` imports it.
"""
