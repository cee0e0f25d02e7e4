"""The output file of an on-demand job: its predictions with the ``job_predictions`` columns, as Parquet or
CSV (by the file's suffix, ``job_input.file_format``), written aside and renamed over so a reader never sees
a half-written file and a retried job rewrites it instead of duplicating rows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scoring.storage.faults import fault_point
from scoring.storage.sources.job_input import file_format

OUTPUT_CONSTANTS = ("model_name", "model_version", "run_id", "day", "scored_at", "job_id")


def write_output(path: Path, prediction_files: list[Path], constants: dict[str, Any]) -> None:
    """Write the predictions with the ``job_predictions`` columns to ``path`` (Parquet or CSV), streamed
    one staged file at a time, aside then renamed over: a reader never sees a half-written file."""
    import pyarrow.csv as pacsv

    from scoring.storage.results.tables import STAGED_PREDICTION_COLUMNS

    path.parent.mkdir(parents=True, exist_ok=True)
    types = {"model_name": pa.string(), "model_version": pa.int32(), "run_id": pa.string(), "day": pa.date32(),
             "scored_at": pa.timestamp("us", tz="UTC"), "job_id": pa.string()}
    schema = pa.schema([*(pq.read_schema(prediction_files[0]).field(c) for c in STAGED_PREDICTION_COLUMNS)]
                       if prediction_files else [pa.field("source_key", pa.string()), pa.field("score", pa.float64()),
                                                 pa.field("label", pa.int8()),
                                                 pa.field("predicted_class", pa.string()),
                                                 pa.field("probabilities", pa.string())])
    schema = pa.schema([*schema, *(pa.field(c, types[c]) for c in OUTPUT_CONSTANTS)])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    parquet = file_format(path) == "parquet"
    writer = pq.ParquetWriter(tmp, schema) if parquet else pacsv.CSVWriter(tmp, schema)
    try:
        with writer:
            for file in prediction_files:
                table = pq.read_table(file, columns=list(STAGED_PREDICTION_COLUMNS))
                for name in OUTPUT_CONSTANTS:
                    table = table.append_column(schema.field(name), pa.array([constants[name]] * table.num_rows,
                                                                             types[name]))
                writer.write_table(table.cast(schema))
        fault_point("before_output_rename")  # crash tests: a kill here leaves the .tmp for cleanup
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
