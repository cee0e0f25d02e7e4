"""Schema evolution shared by the results stores: migrating tables of earlier versions, passthrough columns.

- ``table_changes``: what a table created by an earlier version lacks against its spec (columns to add, NOT
  NULL constraints to drop). Stores read their catalog once and run DDL only for these, so an up-to-date
  schema costs one catalog query and takes no lock.
- ``passthrough_fields``: the staged prediction columns beyond ``STAGED_PREDICTION_COLUMNS`` (source columns
  the config lists in ``results.passthrough``), with their Arrow types.
- ``missing_passthrough``: which of them the predictions table lacks; a name it has with another type family
  is a ``PublishError``.
- ``sql_type``: the DuckDB or PostgreSQL type of an Arrow type.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from scoring.errors import PublishError
from scoring.storage.results.tables import STAGED_PREDICTION_COLUMNS, Column, TableSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExistingColumn:
    """A column as the catalog reports it (``information_schema.columns``)."""

    sql_type: str
    nullable: bool


@dataclass(frozen=True)
class TableChanges:
    add: tuple[Column, ...] = ()
    drop_not_null: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.drop_not_null)


def table_changes(spec: TableSpec, existing: dict[str, ExistingColumn]) -> TableChanges:
    """What an existing table lacks against ``spec``: columns to add (always nullable: old rows get NULL) and
    spec-nullable columns still NOT NULL. Columns the spec does not name (passthrough) are left alone."""
    lowered = {name.lower(): col for name, col in existing.items()}
    add = tuple(c for c in spec.columns if c.name.lower() not in lowered)
    relax = tuple(c.name for c in spec.columns
                  if c.nullable and c.name.lower() in lowered and not lowered[c.name.lower()].nullable)
    return TableChanges(add, relax)


# -- passthrough columns --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StagedColumns:
    """The columns of a run's staged prediction files: which staged prediction columns they have (files
    staged before the model contract lack ``predicted_class`` and ``probabilities``) and the passthrough ones."""

    core: tuple[str, ...]
    passthrough: tuple[pa.Field, ...]


def staged_columns(prediction_files: Sequence[Path], reserved: Sequence[str]) -> StagedColumns:
    """The columns of a run's staged predictions, from the first file's schema (a run stages every chunk with
    the same schema); every column beyond ``STAGED_PREDICTION_COLUMNS`` is a passthrough column.

    Args:
        prediction_files: the staged prediction Parquet files.
        reserved: the predictions table's own column names, which a passthrough column may not take.

    Raises:
        PublishError: a passthrough column named like a predictions column, or of an unsupported type.
    """
    if not prediction_files:
        return StagedColumns(STAGED_PREDICTION_COLUMNS, ())
    from scoring.storage.stagefs import read_schema

    schema = read_schema(prediction_files[0])
    taken = {c.lower() for c in reserved}
    core = tuple(c for c in STAGED_PREDICTION_COLUMNS if c in schema.names)
    out = []
    for field in schema:
        if field.name in STAGED_PREDICTION_COLUMNS:
            continue
        if field.name.lower() in taken:
            raise PublishError(f"staged predictions {str(prediction_files[0])!r}: passthrough column "
                               f"{field.name!r} is named like a column of the predictions table")
        family(field.type, field.name)  # refuses unsupported types early, before any DDL
        out.append(field)
    return StagedColumns(core, tuple(out))


def family(type_: pa.DataType, column: str = "?") -> str:
    """The type family of an Arrow type: integer, float, decimal, bool, string, date, timestamp, timestamptz."""
    t = pa.types
    if t.is_integer(type_):
        return "integer"
    if t.is_floating(type_):
        return "float"
    if t.is_decimal(type_):
        return "decimal"
    if t.is_boolean(type_):
        return "bool"
    if t.is_string(type_) or t.is_large_string(type_) or t.is_string_view(type_):
        return "string"
    if t.is_date(type_):
        return "date"
    if t.is_timestamp(type_):
        return "timestamptz" if type_.tz else "timestamp"
    raise PublishError(f"passthrough column {column!r}: unsupported type {type_} "
                       "(use an integer, float, decimal, boolean, string, date or timestamp column)")


def sql_family(sql_type: str) -> str:
    """The type family of a DuckDB or PostgreSQL type name as ``information_schema`` spells it."""
    s = sql_type.lower().strip()
    if s in ("tinyint", "smallint", "integer", "bigint", "hugeint", "int2", "int4", "int8", "utinyint",
             "usmallint", "uinteger", "ubigint", "uhugeint"):
        return "integer"
    if s in ("real", "float", "double", "double precision", "float4", "float8"):
        return "float"
    if s.startswith(("decimal", "numeric")):
        return "decimal"
    if s in ("boolean", "bool"):
        return "bool"
    if s in ("varchar", "text", "character varying", "string") or s.startswith("varchar"):
        return "string"
    if s == "date":
        return "date"
    if s in ("timestamp with time zone", "timestamptz"):
        return "timestamptz"
    if s.startswith("timestamp"):
        return "timestamp"
    return s


def missing_passthrough(table: str, fields: Sequence[pa.Field], existing: dict[str, ExistingColumn]) -> list[pa.Field]:
    """The passthrough fields the table lacks.

    Raises:
        PublishError: a field whose name the table has with a column of another type family (one line naming
            the column and both types).
    """
    lowered = {name.lower(): col for name, col in existing.items()}
    out = []
    for field in fields:
        found = lowered.get(field.name.lower())
        if found is None:
            out.append(field)
        elif sql_family(found.sql_type) != family(field.type, field.name):
            raise PublishError(f"passthrough column {field.name!r}: staged as {field.type} but {table}."
                               f"{field.name} is {found.sql_type}")
    return out


_DUCKDB_INTS = {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}
_POSTGRES_INTS = {8: "smallint", 16: "smallint", 32: "integer", 64: "bigint"}


def sql_type(type_: pa.DataType, dialect: str) -> str:
    """The column type for an Arrow type in ``dialect`` (``duckdb`` or ``postgres``). Unsigned integers get
    the next wider signed type (uint64 -> DuckDB UBIGINT, PostgreSQL numeric(20, 0))."""
    fam = family(type_)
    pg = dialect == "postgres"
    if fam == "integer":
        bits = type_.bit_width
        if pa.types.is_unsigned_integer(type_):
            if not pg:
                return {8: "UTINYINT", 16: "USMALLINT", 32: "UINTEGER", 64: "UBIGINT"}[bits]
            return "numeric(20, 0)" if bits == 64 else _POSTGRES_INTS[bits * 2]
        return (_POSTGRES_INTS if pg else _DUCKDB_INTS)[bits]
    if fam == "float":
        return ("real" if pg else "FLOAT") if type_.bit_width <= 32 else ("double precision" if pg else "DOUBLE")
    if fam == "decimal":
        if not pg and type_.precision > 38:
            raise PublishError(f"decimal({type_.precision}, {type_.scale}) exceeds DuckDB's precision of 38")
        return f"{'numeric' if pg else 'DECIMAL'}({type_.precision}, {type_.scale})"
    return {"bool": ("BOOLEAN", "boolean"), "string": ("VARCHAR", "text"), "date": ("DATE", "date"),
            "timestamp": ("TIMESTAMP", "timestamp"),
            "timestamptz": ("TIMESTAMPTZ", "timestamptz")}[fam][pg]


def postgres_arrow_type(type_: pa.DataType) -> pa.DataType:
    """The Arrow type whose binary COPY matches ``sql_type(type_, "postgres")`` (PostgreSQL has no 8-bit or
    unsigned integers, no half floats and no large strings)."""
    fam = family(type_)
    if fam == "integer" and (type_.bit_width == 8 or pa.types.is_unsigned_integer(type_)):
        if pa.types.is_unsigned_integer(type_) and type_.bit_width == 64:
            return pa.decimal128(20, 0)
        return {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}[type_.bit_width]
    if fam == "float" and type_.bit_width == 16:
        return pa.float32()
    if fam == "string":
        return pa.string()
    if fam == "date":
        return pa.date32()
    return type_


def postgres_column_arrow(sql_type: str, staged: pa.DataType) -> pa.DataType:
    """The Arrow type to COPY into an existing PostgreSQL column of ``sql_type`` (as ``format_type`` spells
    it) a staged column of the same family: binary COPY needs the column's exact type, not a castable one."""
    s = sql_type.lower()
    fixed = {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "real": pa.float32(),
             "double precision": pa.float64(), "boolean": pa.bool_(), "text": pa.string(), "date": pa.date32(),
             "timestamp without time zone": pa.timestamp("us"),
             "timestamp with time zone": pa.timestamp("us", tz="UTC")}
    if s in fixed:
        return fixed[s]
    if s.startswith("numeric(") and "," in s:
        precision, scale = (int(x) for x in s[len("numeric("):-1].split(","))
        return pa.decimal128(precision, scale)
    if s.startswith(("character varying", "varchar", "character")):
        return pa.string()
    return postgres_arrow_type(staged)
