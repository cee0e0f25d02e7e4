"""PostgreSQL ``numeric`` as the Arrow type that holds its values exactly.

The ADBC driver delivers ``numeric`` as text (an ``arrow.opaque`` extension over strings) together with the
column's type modifier (``POSTGRESQL:typmod`` field metadata). Reading it through ``double precision`` would
change what a key, a passthrough column or a model input is: ``numeric(18,0)`` keys collapse onto the same
double, ``numeric(20,2)`` balances lose their cents. Instead:

- ``numeric(p, s)`` with ``p <= 38`` becomes ``decimal128(p, s)``, with ``p <= 76`` ``decimal256(p, s)``:
  PostgreSQL prints such a value with exactly ``s`` digits after the point, so the cast from its text is exact;
- an unconstrained ``numeric`` that is the key column stays the text PostgreSQL prints (its canonical text;
  Arrow has no arbitrary-precision decimal);
- ``NaN`` (which ``numeric(p, s)`` accepts and no decimal type holds) becomes NULL in the decimal column, and
  the batch's marker column ``special_column(name)`` is true on that row (NULL elsewhere): the run's
  own rule (``gate.special_rule``) quarantines the row naming the column, the value and the rule; it is never
  scored or published as a NULL;
- any other unconstrained ``numeric`` becomes ``float64`` by a correctly rounded parse of that text (what
  PostgreSQL's own ``CAST(x AS double precision)`` gives); a value beyond the double range (``1e400``) becomes
  +/-inf, and the run's own rule on such columns (``Source.double_range_columns``) quarantines its row, naming
  the column (it is never scored).

The type modifier of ``numeric(p, s)`` is ``((p << 16) | s) + 4`` (PostgreSQL ``numeric.c``,
``make_numeric_typmod``); ``-1`` means unconstrained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from scoring.errors import SourceError

logger = logging.getLogger(__name__)

PG_TYPE = b"POSTGRESQL:type"
SPECIAL_PREFIX = "\x1fnot representable\x1f"  # marker columns: the unit separators no real column name holds
NOT_A_NUMBER = "NaN"  # numeric's special value a numeric(p, s) column can hold, as PostgreSQL prints it


def special_column(name: str) -> str:
    """The marker column of ``name`` in a decoded batch: true where the source's value (``NOT_A_NUMBER``) could
    not be represented in the column's type, NULL elsewhere."""
    return SPECIAL_PREFIX + name


def base_column(name: str) -> str:
    """``name`` without the marker prefix (the source column a marker column belongs to)."""
    return name.removeprefix(SPECIAL_PREFIX)
PG_TYPMOD = b"POSTGRESQL:typmod"
VARHDRSZ = 4  # PostgreSQL's typmod offset for numeric


def is_numeric(f: pa.Field) -> bool:
    """Whether a field read by the ADBC driver is a PostgreSQL ``numeric`` column."""
    return (f.metadata or {}).get(PG_TYPE, b"") == b"numeric"


def numeric_target(f: pa.Field, key_column: str | None) -> pa.DataType:
    """The Arrow type a ``numeric`` field is read as (see the module docstring)."""
    typmod = int((f.metadata or {}).get(PG_TYPMOD, b"-1") or -1)
    if typmod >= VARHDRSZ:
        precision, scale = (typmod - VARHDRSZ) >> 16, (typmod - VARHDRSZ) & 0xFFFF
        if precision <= 38:
            return pa.decimal128(precision, scale)
        if precision <= 76:
            return pa.decimal256(precision, scale)
    return pa.string() if f.name == key_column else pa.float64()


@dataclass
class NumericReader:
    """The ``numeric`` columns of a raw (driver) schema and how each is decoded.

    Attributes:
        targets: column name -> Arrow type it is read as.
    """

    targets: dict[str, pa.DataType]

    @classmethod
    def of(cls, raw: pa.Schema, key_column: str | None) -> NumericReader:
        return cls({f.name: numeric_target(f, key_column) for f in raw if is_numeric(f)})

    @property
    def special_columns(self) -> frozenset[str]:
        """Columns read as a decimal type (their NaN values get a marker column, see the module doc)."""
        return frozenset(n for n, t in self.targets.items() if pa.types.is_decimal(t))

    def schema(self, schema: pa.Schema, marks: bool = False) -> pa.Schema:
        """``schema`` with each numeric column's type replaced by its target (field metadata kept); ``marks``:
        with the marker column after each decimal one, as ``decode(..., marks=True)`` delivers them."""
        fields: list[pa.Field] = []
        for f in schema:
            target = self.targets.get(f.name)
            fields.append(f if target is None else f.with_type(target))
            if marks and target is not None and pa.types.is_decimal(target):
                fields.append(pa.field(special_column(f.name), pa.bool_()))
        return pa.schema(fields, metadata=schema.metadata)

    def decode(self, batch: pa.RecordBatch, marks: bool = False) -> pa.RecordBatch:
        """``batch`` with its numeric columns converted to their targets; ``marks``: with a boolean marker
        column (``special_column``) after each decimal column, true where the source had NaN (the decimal is
        then NULL). Without ``marks`` a NaN raises.

        Raises:
            SourceError: a value that does not fit its column's declared type (``NaN`` in ``numeric(p, s)``
                without ``marks``, a value longer than the declared precision), naming the column and value.
        """
        names = [n for n in batch.schema.names if n in self.targets]
        if not names:
            return batch
        arrays: list[pa.Array] = []
        fields: list[pa.Field] = []
        for f, array in zip(batch.schema, batch.columns, strict=True):
            if f.name not in self.targets:
                arrays.append(array)
                fields.append(f)
                continue
            target = self.targets[f.name]
            special = None
            if marks and pa.types.is_decimal(target):
                array, special = self._split_special(array)
            arrays.append(self._convert(f.name, array, target))
            fields.append(f.with_type(target))
            if special is not None:
                arrays.append(special)
                fields.append(pa.field(special_column(f.name), pa.bool_()))
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata=batch.schema.metadata))

    @staticmethod
    def _split_special(array: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(the text with NaN replaced by NULL, the marker: true on those rows, NULL elsewhere)."""
        text = array.storage if isinstance(array, pa.ExtensionArray) else array
        if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
            return array, pa.nulls(len(array), pa.bool_())
        # the driver spells it "nan" (PostgreSQL prints "NaN"): compared case-insensitively. The marker is a
        # boolean (two bits a row: a decimal column's marker costs next to nothing when it holds no NaN).
        hit = pc.fill_null(pc.is_in(pc.utf8_lower(text.cast(pa.string())), value_set=pa.array(["nan"])), False)
        if not pc.any(hit).as_py():
            return array, pa.nulls(len(array), pa.bool_())
        return pc.if_else(hit, pa.scalar(None, text.type), text), pc.if_else(hit, True, pa.scalar(None, pa.bool_()))

    def _convert(self, name: str, array: pa.Array, target: pa.DataType) -> pa.Array:
        text = array.storage if isinstance(array, pa.ExtensionArray) else array
        if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
            return pc.cast(text, target)
        if pa.types.is_string(target):
            return text.cast(pa.string())
        try:
            out = pc.cast(text, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = _first_unparsable(text, target)
            raise SourceError(f"column {name!r}: value {bad!r} does not fit {target} "
                              "(the column's declared numeric type)") from None
        return out  # a value beyond the double range parses to +/-inf: the run's range rule quarantines it


def _first_unparsable(text: pa.Array, target: pa.DataType) -> str | None:
    for value in text.to_pylist():
        if value is None:
            continue
        try:
            pc.cast(pa.array([value]), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return value
    return None
