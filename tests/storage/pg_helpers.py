"""PostgreSQL test helpers: copy the DuckDB sample into a schema, read tables back with psycopg."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as pg
import duckdb
import pandas as pd
import psycopg
from psycopg import sql


def copy_sample(db: Path, url: str, schema: str, table: str = "loan_applications") -> int:
    """Copy the DuckDB sample table into ``schema.table`` with PostgreSQL-native types: the timestamp as
    timestamptz (the DuckDB value is UTC), money columns as numeric(14,2). Returns the row count."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql(f"SELECT * FROM {table}").to_arrow_table()
    with pg.connect(url) as con, con.cursor() as cur:
        cur.adbc_ingest(f"{table}_raw", rows, mode="create", db_schema_name=schema)
        cols = []
        for name in rows.column_names:
            if name == "applied_at":
                cols.append(f"{name} AT TIME ZONE 'UTC' AS {name}")
            elif name in ("annual_income", "loan_amount"):
                cols.append(f"CAST({name} AS numeric(14, 2)) AS {name}")
            else:
                cols.append(name)
        cur.execute(f'CREATE TABLE "{schema}".{table} AS SELECT {", ".join(cols)} FROM "{schema}".{table}_raw')
        cur.execute(f'ALTER TABLE "{schema}".{table} ADD PRIMARY KEY (application_id)')
        cur.execute(f'CREATE INDEX ON "{schema}".{table} (applied_at)')
        cur.execute(f'DROP TABLE "{schema}".{table}_raw')
        con.commit()
    return rows.num_rows


def pg_frame(url: str, query: str, params: list[Any] | None = None) -> pd.DataFrame:
    """Rows of ``query`` as a DataFrame (psycopg, independent of the code under test)."""
    with psycopg.connect(url) as con, con.cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)


def pg_published(url: str, schema: str, day: dt.date | None = None, table: str = "predictions") -> pd.DataFrame:
    q = sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if day is None:
        return pg_frame(url, q.as_string() + " ORDER BY day, source_key")
    return pg_frame(url, q.as_string() + " WHERE day = %s ORDER BY source_key", [day])


def pg_ledger(url: str, schema: str) -> pd.DataFrame:
    return pg_frame(url, sql.SQL("SELECT * FROM {}.runs ORDER BY started_at").format(
        sql.Identifier(schema)).as_string())


def pg_execute(url: str, statement: str, params: list[Any] | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(statement, params)


def make_wide_table(url: str, schema: str, rows: int, table: str = "wide") -> list[str]:
    """A 100-column table: id, ts (all on 2026-03-07 UTC) and 98 features cycling through double, integer,
    numeric(10,3) and text, each NULL where (id + i) % 11 == 0. Returns the feature names."""
    feats = [f"f{i:02d}" for i in range(98)]
    kinds = ["double precision", "integer", "numeric(10, 3)", "text"]
    cols = ", ".join(f"{f} {kinds[i % 4]}" for i, f in enumerate(feats))
    exprs = []
    for i in range(len(feats)):
        value = {0: f"g * {i}.5", 1: f"g % {i + 2}", 2: f"round((g / 7.0 + {i})::numeric, 3)",
                 3: "'v' || (g % 5)"}[i % 4]
        exprs.append(f"CASE WHEN (g + {i}) % 11 = 0 THEN NULL ELSE {value} END")
    step = 86_400 / rows
    pg_execute(url, f'CREATE TABLE "{schema}".{table} (id bigint PRIMARY KEY, ts timestamptz, {cols})')
    pg_execute(url, f"""INSERT INTO "{schema}".{table} SELECT g,
        timestamptz '2026-03-07 00:00+00' + g * {step} * interval '1 s', {", ".join(exprs)}
        FROM generate_series(0, {rows - 1}) AS g""")
    return feats
