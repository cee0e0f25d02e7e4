"""What re-publishing a day removes: predictions published before whose key the new run does not publish.

A late-data re-score or a rerun replaces a day's partition whole. A key published before and absent now
must not vanish silently: ``note_removed_predictions`` counts such keys before the publish, says how many of
them the new run quarantined (a replayed key under ``validation.duplicate_keys: quarantine``, a row that now
fails a rule) and how many left the source altogether, writes that into the run's ledger details
(``replaced``) and logs a warning. It reads the partition as the store holds it just before the publish
transaction (informational: the publish itself is still atomic and the newer-run check still applies).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from scoring.storage.duck import duck_connect
from scoring.storage.stagefs import all_local, batch_reader

if TYPE_CHECKING:
    from scoring.storage.results.base import ResultsStore, RunRecord

logger = logging.getLogger(__name__)
SAMPLE = 20  # keys listed in the ledger details


REMOVED_MEMORY_MIB = 256  # DuckDB's limit for the comparison below; it spills past it (5M keys: no RSS growth)


def _key_reader(files: Sequence[Any]) -> pa.RecordBatchReader:
    if not files:
        return pa.RecordBatchReader.from_batches(pa.schema([("source_key", pa.string())]), [])
    return batch_reader(files, ["source_key"])


def _removed(before: pa.Array, prediction_files: Sequence[str | Path],
             quarantine_files: Sequence[str | Path]) -> dict[str, Any]:
    """The keys of ``before`` the staged predictions do not hold, split by whether this attempt quarantined
    them: ``{"predictions_before", "removed", "removed_quarantined", "removed_from_source", "sample"}``.

    Compared by DuckDB over the streamed staged keys within ``REMOVED_MEMORY_MIB`` (spilling past it): an
    in-memory set of a 5M-row day's keys cost 685 MiB of peak RSS on a re-publish."""
    con = duck_connect(utc=False, memory_mib=REMOVED_MEMORY_MIB)
    try:
        con.register("before_keys", pa.table({"source_key": before}))
        con.register("staged_keys", _key_reader(prediction_files))
        con.execute("CREATE TEMP TABLE removed AS SELECT b.source_key FROM before_keys b WHERE NOT EXISTS "
                    "(SELECT 1 FROM staged_keys s WHERE CAST(s.source_key AS VARCHAR) = b.source_key)")
        con.register("quarantined_keys", _key_reader(quarantine_files))
        removed = con.execute("SELECT count(*) FROM removed").fetchall()[0][0]
        quarantined = con.execute("SELECT count(*) FROM removed r WHERE EXISTS (SELECT 1 FROM quarantined_keys q "
                                  "WHERE CAST(q.source_key AS VARCHAR) = r.source_key)").fetchall()[0][0]
        sample = [r[0] for r in con.execute("SELECT source_key FROM removed ORDER BY source_key LIMIT $1",
                                            [SAMPLE]).fetchall()]
    finally:
        con.close()
    return {"predictions_before": len(before), "removed": int(removed), "removed_quarantined": int(quarantined),
            "removed_from_source": int(removed) - int(quarantined), "sample": sample}


def removed_in(con: Any, before_sql: str, params: list[Any], prediction_files: Sequence[str | Path],
               quarantine_files: Sequence[str | Path]) -> dict[str, Any]:
    """``_removed`` computed by DuckDB on ``con`` itself, where the keys published before are the
    ``source_key`` column of ``before_sql`` (bound to ``params``) and the staged files are local Parquet
    read by DuckDB: the results file's partition is never copied out to Arrow and back (on a re-published
    2,000,000-row day that copy and the streamed staged keys cost about 4x the CPU of this join). The same
    counts and sample as ``_removed``; a temporary table ``removed`` is left on ``con``."""
    n = len(params)

    def keys(files: Sequence[str | Path], at: int) -> tuple[str, list[Any]]:
        if not files:
            return "(SELECT CAST(NULL AS VARCHAR) AS source_key WHERE false)", []
        return f"read_parquet(${at}, union_by_name = true)", [[str(f) for f in files]]  # chunks may differ

    staged, staged_bound = keys(prediction_files, n + 1)
    con.execute(f"CREATE OR REPLACE TEMP TABLE removed AS SELECT CAST(b.source_key AS VARCHAR) AS source_key "  # noqa: S608
                f"FROM ({before_sql}) b WHERE NOT EXISTS (SELECT 1 FROM {staged} s "
                "WHERE CAST(s.source_key AS VARCHAR) = CAST(b.source_key AS VARCHAR))", [*params, *staged_bound])
    before = con.execute(f"SELECT count(*) FROM ({before_sql}) b", params).fetchall()[0][0]  # noqa: S608
    removed = con.execute("SELECT count(*) FROM removed").fetchall()[0][0]
    quarantined_scan, quarantined_bound = keys(quarantine_files, 1)
    quarantined = con.execute(f"SELECT count(*) FROM removed r WHERE EXISTS (SELECT 1 FROM {quarantined_scan} q "  # noqa: S608
                              "WHERE CAST(q.source_key AS VARCHAR) = r.source_key)", quarantined_bound
                              ).fetchall()[0][0] if removed else 0
    sample = [r[0] for r in con.execute("SELECT source_key FROM removed ORDER BY source_key LIMIT $1",
                                        [SAMPLE]).fetchall()] if removed else []
    return {"predictions_before": int(before), "removed": int(removed), "removed_quarantined": int(quarantined),
            "removed_from_source": int(removed) - int(quarantined), "sample": sample}


def _file_keys(path: Path) -> pa.Array:
    """The distinct ``source_key`` values of a job output file (Parquet or CSV) as text."""
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            include_columns=["source_key"], column_types={"source_key": pa.string()}))
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["source_key"])
    return pc.unique(table.column("source_key").combine_chunks().cast(pa.string()))


def note_replaced_output(job_id: str, path: Path, prediction_files: Sequence[str | Path],
                         quarantine_files: Sequence[str | Path]) -> dict[str, Any] | None:
    """What a job's ``--output`` replacing an existing file (``--overwrite``, or a retry of the job) removes:
    the keys the file held that the job's output does not, as ``_removed`` counts them (``removed_from_source``
    is then: not in the job's input), with a warning; None when there is no such file or it removes nothing.
    An existing file that cannot be read as an output file is not counted (it is replaced all the same)."""
    if not path.is_file():
        return None
    try:
        before = _file_keys(path)
    except (OSError, pa.ArrowException, KeyError) as exc:
        logger.warning("job %s replaces %s, which is not a readable output file (%s)", job_id, path,
                       str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    out = {"output": str(path), **_removed(before, prediction_files, quarantine_files)}
    if not out["removed"]:
        return None
    logger.warning("job %s replaces %s: %s of the %s predictions it held are gone (%s quarantined by this job, %s "
                   "not in its input); see the job's details.replaced", job_id, path, out["removed"],
                   out["predictions_before"], out["removed_quarantined"], out["removed_from_source"])
    return out


def note_removed_predictions(results: ResultsStore, run: RunRecord, prediction_files: Sequence[str | Path],
                             quarantine_files: Sequence[str | Path]) -> dict[str, Any] | None:
    """Record in ``run.details["replaced"]`` the previously published keys this run does not publish.

    Returns:
        ``{"predictions_before", "removed", "removed_quarantined", "removed_from_source", "sample"}``, or None
        when the day had no published predictions of this model (nothing is replaced).
    """
    sql = (f"SELECT source_key FROM {results.table_name(results.cfg.table)} "  # noqa: S608 - quoted identifier
           "WHERE day = $1 AND model_name = $2")
    within = getattr(results, "removed_keys", None)  # the DuckDB store: the comparison inside the results file
    if within is not None and all_local([*prediction_files, *quarantine_files]):
        out = within(sql, [run.day, run.model_name], prediction_files, quarantine_files)
        if out is None:
            return None
    else:
        before = results.query(sql, [run.day, run.model_name], wait_locks=True).column("source_key") \
            .combine_chunks().cast(pa.string())
        if len(before) == 0:
            return None
        out = _removed(before, prediction_files, quarantine_files)
    if out["removed"]:
        run.details["replaced"] = out
        logger.warning("run %s removes %s of the %s predictions published before for %s (%s quarantined by this run, "
                       "%s no longer in the source); see the run's details.replaced", run.run_id, out["removed"],
                       out["predictions_before"], run.day, out["removed_quarantined"], out["removed_from_source"])
    return out
