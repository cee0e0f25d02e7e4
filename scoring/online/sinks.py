"""Where online outputs go: ``online_requests`` (opt-in request log), ``stream_predictions`` and
``online_daily`` (the daily ledger of each service and consumer: rows received, scored, rejected by a rule,
invalid, per business day and model version; ``scoring runs`` shows it under the batch ledger).

A target is a PostgreSQL URL (``postgresql://...``; tables in ``schema``) or a DuckDB file. Both tables are
written idempotently: ``stream_predictions`` has the primary key (event_id, model_version) and
``online_requests`` (request_id, row_index); a re-delivered event or a retried write inserts nothing twice
(``INSERT ... ON CONFLICT DO NOTHING``, in one transaction per micro-batch).

DuckDB lets one process write a file at a time, so the DuckDB sink opens the file for each write and
retries while another process holds it (up to ``lock_timeout_s``); several consumers writing at once
belong on PostgreSQL. Keep these files apart from the batch results file, which a publish locks.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from scoring.errors import PublishError
from scoring.sqlident import validate_identifier

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("event_id", "model_name", "model_version", "score", "label", "predicted_class",
                      "probabilities", "event_json", "event_at", "scored_at")
DAILY_KEY = ("day", "kind", "service", "model_name", "model_version")
DAILY_COUNTS = ("received", "scored", "rejected", "invalid")
DAILY_COLUMNS = (*DAILY_KEY, *DAILY_COUNTS, "first_at", "last_at")
REQUEST_COLUMNS = ("request_id", "row_index", "origin", "received_at", "model_name", "model_version",
                   "row_json", "score", "label", "predicted_class", "probabilities", "rejected")

def _arrow_types() -> dict[str, Any]:
    import pyarrow as pa

    text, ts = pa.string(), pa.timestamp("us")
    return {"event_id": text, "model_name": text, "model_version": pa.int32(), "score": pa.float64(),
            "label": pa.int16(), "predicted_class": text, "probabilities": text, "event_json": text,
            "event_at": ts, "scored_at": ts, "request_id": text, "row_index": pa.int32(), "origin": text,
            "received_at": ts, "row_json": text, "rejected": text}


ARROW = _arrow_types()

_DDL = {
    "stream_predictions": """(event_id VARCHAR NOT NULL, model_name VARCHAR NOT NULL, model_version INTEGER NOT NULL,
        score DOUBLE PRECISION, label SMALLINT, predicted_class VARCHAR, probabilities VARCHAR, event_json VARCHAR,
        event_at TIMESTAMP, scored_at TIMESTAMP NOT NULL, PRIMARY KEY (event_id, model_version))""",
    "online_requests": """(request_id VARCHAR NOT NULL, row_index INTEGER NOT NULL, origin VARCHAR NOT NULL,
        received_at TIMESTAMP NOT NULL, model_name VARCHAR NOT NULL, model_version INTEGER NOT NULL,
        row_json VARCHAR, score DOUBLE PRECISION, label SMALLINT, predicted_class VARCHAR,
        probabilities VARCHAR, rejected VARCHAR, PRIMARY KEY (request_id, row_index))""",
    "online_daily": """(day DATE NOT NULL, kind VARCHAR NOT NULL, service VARCHAR NOT NULL,
        model_name VARCHAR NOT NULL, model_version INTEGER NOT NULL, received BIGINT NOT NULL,
        scored BIGINT NOT NULL, rejected BIGINT NOT NULL, invalid BIGINT NOT NULL, first_at TIMESTAMP NOT NULL,
        last_at TIMESTAMP NOT NULL, PRIMARY KEY (day, kind, service, model_name, model_version))""",
}


def utcnow() -> dt.datetime:
    """Now, naive UTC (the tables' TIMESTAMP columns are UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Sink:
    """The two online tables in one database (see the module docstring)."""

    def __init__(self, target: str, schema: str = "scoring_online", lock_timeout_s: float = 60.0) -> None:
        self.target = target
        self.postgres = target.startswith(("postgresql://", "postgres://"))
        self.schema = validate_identifier(schema, "schema")
        self.lock_timeout_s = lock_timeout_s
        self._pg: Any = None
        self._run(self._create)

    def _name(self, table: str) -> str:
        return f'"{self.schema}"."{table}"' if self.postgres else table

    def _connect(self) -> Any:
        if self.postgres:
            if self._pg is None or self._pg.closed:
                import psycopg

                self._pg = psycopg.connect(self.target, connect_timeout=10)
            return self._pg
        import duckdb

        from scoring.storage.duck import duck_connect

        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                return duck_connect(Path(self.target), utc=False)  # no extension downloads, as every connection
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise PublishError(f"cannot open {self.target!r}: {str(exc).splitlines()[0]}") from None
                time.sleep(0.05)

    def _run(self, work: Any) -> Any:
        con = self._connect()
        try:
            if self.postgres:
                with con.transaction():
                    return work(con.cursor())
            con.execute("BEGIN TRANSACTION")
            try:
                out = work(con)
                con.execute("COMMIT")
                return out
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            if not self.postgres:
                con.close()

    def _create(self, cur: Any) -> None:
        if self.postgres:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        for table, ddl in _DDL.items():
            cur.execute(f"CREATE TABLE IF NOT EXISTS {self._name(table)} {ddl}")

    def _insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.postgres:
            sql = (f"INSERT INTO {self._name(table)} ({', '.join(columns)}) VALUES "  # noqa: S608 - fixed names
                   f"({', '.join(['%s'] * len(columns))}) ON CONFLICT DO NOTHING")
            self._run(lambda cur: cur.executemany(sql, rows))
            return
        # DuckDB: one INSERT ... SELECT from an Arrow table (executemany runs one statement per row, ~15 ms each)
        import pyarrow as pa

        batch = pa.table({c: pa.array([r[i] for r in rows], ARROW[c]) for i, c in enumerate(columns)})
        names = ", ".join(columns)

        def insert(con: Any) -> None:
            con.register("_online_rows", batch)
            try:
                con.execute(f"INSERT INTO {self._name(table)} ({names}) SELECT {names} "  # noqa: S608 - fixed names
                            "FROM _online_rows ON CONFLICT DO NOTHING")
            finally:
                con.unregister("_online_rows")

        self._run(insert)

    def write_predictions(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``stream_predictions`` rows (``PREDICTION_COLUMNS`` order); existing keys are kept as they are."""
        self._insert("stream_predictions", PREDICTION_COLUMNS, rows)

    def write_batch(self, rows: list[tuple[Any, ...]], daily: list[dict[str, Any]]) -> int:
        """In one transaction: insert a consumer's micro-batch into ``stream_predictions`` (as
        ``write_predictions``) and add its counts to ``online_daily`` (``add_daily``), with ``scored`` the
        rows this insert added: a redelivered batch that is already committed adds no scored rows twice.

        Args:
            rows: ``PREDICTION_COLUMNS`` tuples of one model version (or none).
            daily: ``add_daily`` rows whose ``scored`` is left to this method (set to the rows inserted).

        Returns:
            The number of rows inserted.
        """
        def work(cur: Any) -> int:
            added = self._insert_in(cur, "stream_predictions", PREDICTION_COLUMNS, rows, count_new=True)
            for row in daily:
                row["scored"] = added if row["scored"] else 0
            self._add_daily_in(cur, daily)
            return added

        return self._run(work)

    def add_daily(self, rows: list[dict[str, Any]]) -> None:
        """Add counts to ``online_daily`` in one transaction: each row is a ``DAILY_COLUMNS`` dict (the key, the
        counts to add, ``first_at``/``last_at`` of the counted rows); an existing (day, kind, service, model,
        version) row gets the counts added and its time span widened."""
        if rows:
            self._run(lambda cur: self._add_daily_in(cur, rows))

    def _add_daily_in(self, cur: Any, rows: list[dict[str, Any]]) -> None:
        mark = "%s" if self.postgres else "?"
        table = self._name("online_daily")
        adds = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in DAILY_COUNTS)
        sql = (f"INSERT INTO {table} ({', '.join(DAILY_COLUMNS)}) VALUES ({', '.join([mark] * len(DAILY_COLUMNS))}) "  # noqa: S608
               f"ON CONFLICT ({', '.join(DAILY_KEY)}) DO UPDATE SET {adds}, "
               f"first_at = LEAST({table}.first_at, excluded.first_at), "
               f"last_at = GREATEST({table}.last_at, excluded.last_at)")
        for row in rows:
            if any(row[c] for c in DAILY_COUNTS):
                cur.execute(sql, [row[c] for c in DAILY_COLUMNS])

    def _insert_in(self, cur: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
                   count_new: bool = False) -> int:
        """``_insert`` inside an open transaction; with ``count_new``, the number of rows whose key
        (``event_id``, ``model_version``) was not there yet (what the insert adds)."""
        if not rows:
            return 0
        import pyarrow as pa

        batch = pa.table({c: pa.array([r[i] for r in rows], ARROW[c]) for i, c in enumerate(columns)})
        names = ", ".join(columns)
        if self.postgres:
            new = 0
            if count_new:
                cur.execute(f"SELECT count(*) FROM unnest(%s::text[], %s::int[]) AS r(event_id, model_version) "  # noqa: S608
                            f"WHERE NOT EXISTS (SELECT 1 FROM {self._name(table)} p WHERE p.event_id = r.event_id "
                            "AND p.model_version = r.model_version)",
                            [[r[0] for r in rows], [r[2] for r in rows]])
                new = int(cur.fetchone()[0])
            cur.executemany(f"INSERT INTO {self._name(table)} ({names}) VALUES "  # noqa: S608 - fixed names
                            f"({', '.join(['%s'] * len(columns))}) ON CONFLICT DO NOTHING", rows)
            return new
        cur.register("_online_rows", batch)
        try:
            new = cur.execute(f"SELECT count(*) FROM _online_rows r WHERE NOT EXISTS (SELECT 1 FROM "  # noqa: S608
                              f"{self._name(table)} p WHERE p.event_id = r.event_id AND p.model_version = "
                              "r.model_version)").fetchone()[0] if count_new else 0
            cur.execute(f"INSERT INTO {self._name(table)} ({names}) SELECT {names} "  # noqa: S608 - fixed names
                        "FROM _online_rows ON CONFLICT DO NOTHING")
        finally:
            cur.unregister("_online_rows")
        return int(new)

    def write_requests(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``online_requests`` rows (``REQUEST_COLUMNS`` order)."""
        self._insert("online_requests", REQUEST_COLUMNS, rows)

    def read_daily(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``online_daily`` rows (by day, then kind, service and version), at most ``limit``."""
        sql = (f"SELECT {', '.join(DAILY_COLUMNS)} FROM {self._name('online_daily')} "  # noqa: S608 - fixed names
               f"ORDER BY day DESC, kind, service, model_name, model_version LIMIT {int(limit)}")

        def fetch(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql)
            return cur.fetchall()

        return [dict(zip(DAILY_COLUMNS, row, strict=True)) for row in self._run(fetch)]

    def read(self, table: str, since: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Rows of ``online_requests`` (by ``received_at``) or ``stream_predictions`` (by ``scored_at``)."""
        if table not in _DDL:
            raise ValueError(f"unknown table {table}")
        column = "received_at" if table == "online_requests" else "scored_at"
        names = REQUEST_COLUMNS if table == "online_requests" else PREDICTION_COLUMNS
        mark = "%s" if self.postgres else "?"
        sql = f"SELECT {', '.join(names)} FROM {self._name(table)}"  # noqa: S608 - fixed names
        params: list[Any] = []
        if since is not None:
            sql += f" WHERE {column} >= {mark}"
            params.append(since.astimezone(dt.UTC).replace(tzinfo=None) if since.tzinfo else since)

        def fetch(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, params)
            return cur.fetchall()

        return [dict(zip(names, row, strict=True)) for row in self._run(fetch)]

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None


def default_target(cfg: Any) -> str:
    """The online tables' home next to the results store: the same PostgreSQL database (schema
    ``scoring_online``), or, for DuckDB results, ``<results file>_online.duckdb`` (a separate file, because a
    batch publish locks the results file)."""
    if cfg.results.kind == "postgres" and cfg.results.url:
        return str(cfg.results.url)
    path = Path(cfg.results.path or "results/results.duckdb")
    return str(path.with_name(path.stem + "_online.duckdb"))
