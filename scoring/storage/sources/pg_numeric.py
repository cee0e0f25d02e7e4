"""PostgreSQL ``numeric`` as the Arrow type that holds its values exactly.

The ADBC driver delivers ``numeric`` as text (an ``arrow.opaque`` extension over strings) together with the
column's type modifier (``POSTGRESQL:typmod`` field metadata). Reading it through ``double precision`` would
change what a key, a passthrough column or a model input is: ``numeric(18,0)`` keys collapse onto the same
double, ``numeric(20,2)`` balances lose their cents. Instead:

- ``numeric(p, s)`` with ``p <= 38`` becomes ``decimal128(p, s)``, with ``p <= 76`` ``decimal256(p, s)``:
  PostgreSQL prints such a value with exactly ``s`` digits after the point, so the cast from its text is exact;
- an unconstrained ``numeric`` that is the key column stays the text PostgreSQL prints (its canonical text;
  Arrow has no arbitrary-precision decimal);
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

    def schema(self, schema: pa.Schema) -> pa.Schema:
        """``schema`` with each numeric column's type replaced by its target (field metadata kept)."""
        fields = [f.with_type(self.targets[f.name]) if f.name in self.targets else f for f in schema]
        return pa.schema(fields, metadata=schema.metadata)

    def decode(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` with its numeric columns converted to their targets.

        Raises:
            SourceError: a value that does not fit its column's declared type (``NaN`` in ``numeric(p, s)``),
                naming the column and the value.
        """
        names = [n for n in batch.schema.names if n in self.targets]
        if not names:
            return batch
        arrays = list(batch.columns)
        fields = list(batch.schema)
        for i, f in enumerate(fields):
            if f.name not in self.targets:
                continue
            target = self.targets[f.name]
            arrays[i] = self._convert(f.name, arrays[i], target)
            fields[i] = f.with_type(target)
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata=batch.schema.metadata))

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
