"""Which engine runs the row-level gate: measured side by side on the same day and the same suite.

Contenders, each in a fresh interpreter on the benchmark's big day (rows read into memory first, untimed):

(a) bare ``predict_proba`` of the sample model (the budget: validation may add at most 15% of it);
(b) the compiled rules as pyarrow.compute + numpy masks per chunk (what the pipeline runs);
(c) the same rules as DuckDB SQL over each Arrow chunk (first failing rule per row, and per-rule counts);
(d) Great Expectations' own pandas engine validating the suite file on the whole day, ``COMPLETE`` results.

About 2% of the day's rows are made to fail a quarantining rule (``DIRTY``).
(b), (c) and (d) all end with the quarantine records of the failing rows (``quarantine_rows``), so they do
the same work; (d) validates one in-memory DataFrame of the day (its to_pandas is not timed).

    .venv/bin/python benchmarks/bench_validation_engines.py [--rows 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from contenders import BARE, BIG_DAY, build, run_contender  # noqa: E402

SETUP = """
import json, sys, time, datetime as dt
import numpy as np, pyarrow as pa
from scoring.run.sizing import chunk_rows
from scoring.config import load_config
from scoring.dates import DataInterval
from scoring.models.store import ModelStore
from scoring.quality.quarantine import quarantine_rows
from scoring.models.scorer import encoded_width
from scoring.storage.sources import open_source
from scoring.quality.run_checks import prepare_quality
cfg = load_config(sys.argv[1]); interval = DataInterval.for_day(dt.date.fromisoformat(sys.argv[2]))
ms = ModelStore(cfg.model.store); mv = ms.resolve(cfg.model.name, "champion"); model = ms.load(mv)
with open_source(cfg.source) as source:
    size = chunk_rows(source.schema(), encoded_width(model, len(mv.features)), cfg.chunking.memory_budget_mib,
                      cfg.chunking.rows_per_chunk)
    chunks = [pa.Table.from_batches([b]) for b in source.batches(interval, size)]
    quality = prepare_quality(cfg, mv, source, interval)
gate, key = quality.gate, cfg.source.key_column
"""

ARROW = SETUP + """
from scoring.quality.gate import apply_gate
t = time.perf_counter(); out = [apply_gate(gate, c) for c in chunks]; s = time.perf_counter() - t
print(json.dumps({"seconds": s, "quarantined": sum(o.quarantine.num_rows for o in out)}))
"""

DUCKDB = SETUP + """
import duckdb
def q(v): return "'" + str(v).replace("'", "''") + "'"
def expr(rule, table):
    c, kw = '"' + rule.column + '"', rule.kwargs
    floating = pa.types.is_floating(table.schema.field(rule.column).type)
    nan = f" OR isnan({c})" if floating else ""
    if rule.type == "expect_column_values_to_not_be_null":
        return f"({c} IS NULL{nan})"
    if rule.type == "expect_column_values_to_be_between":
        if isinstance(kw.get("min_value"), str):  # the run's interval rule on the timestamp
            lo, hi = (dt.datetime.fromisoformat(kw[k]).replace(tzinfo=None) for k in ("min_value", "max_value"))
            return f"({c} < TIMESTAMP {q(lo)} OR {c} >= TIMESTAMP {q(hi)})"
        parts = [f"{c} < {kw['min_value']}" if kw.get("min_value") is not None else "",
                 f"{c} > {kw['max_value']}" if kw.get("max_value") is not None else ""]
        return "((" + " OR ".join(p for p in parts if p) + ")" + (f" AND NOT isnan({c}))" if floating else ")")
    if rule.type == "expect_column_values_to_be_in_set":
        return f"({c} NOT IN ({', '.join(q(v) for v in kw['value_set'])}))"
    if rule.type == "expect_column_values_to_be_unique":
        return f"({c} IN (SELECT v FROM dups))"
    return "FALSE"
con = duckdb.connect()
con.register("dups", pa.table({"v": gate.duplicates[key]}))
t = time.perf_counter(); quarantined = 0
for chunk in chunks:
    table = chunk.append_column("__rn", pa.array(np.arange(chunk.num_rows)))
    con.register("chunk", table)
    exprs = [expr(r, table) for r in gate.rules]
    counts = con.sql("SELECT " + ", ".join(f"count(*) FILTER (WHERE {e})" for e in exprs) + " FROM chunk").fetchall()
    cases = " ".join(f"WHEN {e} THEN {i}" for i, (e, r) in enumerate(zip(exprs, gate.rules)) if r.quarantines)
    bad = con.sql(f"SELECT __rn, CASE {cases} END AS r FROM chunk WHERE CASE {cases} END IS NOT NULL").fetchnumpy()
    for i in np.unique(bad["r"]):
        rows = np.sort(bad["__rn"][bad["r"] == i])
        rule = gate.rules[int(i)]
        quarantined += quarantine_rows(chunk, rows, rule.column, rule.type, key).num_rows
    con.unregister("chunk")
s = time.perf_counter() - t
print(json.dumps({"seconds": s, "quarantined": quarantined}))
"""

GX = SETUP + """
import logging
logging.getLogger("great_expectations").setLevel(logging.WARNING)
import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig
context = gx.get_context(mode="ephemeral"); context.variables.progress_bars = ProgressBarsConfig(globally=False)
day = pa.concat_tables(chunks)
frame = day.to_pandas()
suite = gx.ExpectationSuite(**{k: v for k, v in quality.suite.items() if k != "id"})
batch = (context.data_sources.add_pandas("p").add_dataframe_asset("day").add_batch_definition_whole_dataframe("all")
         .get_batch(batch_parameters={"dataframe": frame}))
t = time.perf_counter()
result = batch.validate(suite, result_format="COMPLETE")
failing = np.zeros(len(frame), dtype=bool); quarantined = 0
for r in result.results:  # first failing critical rule per row, as the gate does
    idx = np.asarray((r.result or {}).get("unexpected_index_list") or [], dtype=np.int64)
    if idx.size and r.expectation_config.severity == "critical":
        new = idx[~failing[idx]]; failing[idx] = True
        quarantined += quarantine_rows(day, np.sort(new), r.expectation_config.kwargs["column"],
                                       r.expectation_config.type, key).num_rows
s = time.perf_counter() - t
print(json.dumps({"seconds": s, "quarantined": quarantined}))
"""


# About 2% of the big day's rows break a quarantining rule (after the model and its suite were made), so every
# engine also has failing rows to find and quarantine records to build.
DIRTY = [
    "UPDATE loan_applications SET loan_amount = NULL WHERE application_id % 200 = 1",
    "UPDATE loan_applications SET age = 50000 WHERE application_id % 200 = 2",
    "UPDATE loan_applications SET annual_income = 'inf'::DOUBLE WHERE application_id % 200 = 3",
    "UPDATE loan_applications SET employment_type = NULL WHERE application_id % 100 = 4",
    "INSERT INTO loan_applications SELECT * FROM loan_applications WHERE application_id % 1000 = 5",
]


def dirty(db: Path) -> None:
    import duckdb

    with duckdb.connect(str(db)) as con:
        for sql in DIRTY:
            con.execute(sql.replace("WHERE", f"WHERE CAST(applied_at AS DATE) = DATE '{BIG_DAY}' AND"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        print(f"building source: {args.rows:,} rows, training the sample model ...")
        cfg = str(build(Path(tmp), args.rows, 1_000))
        dirty(Path(tmp) / "source.duckdb")
        names = {"bare": "(a) bare predict_proba", "arrow": "(b) compiled rules, pyarrow + numpy",
                 "duckdb": "(c) same rules as DuckDB SQL", "gx": "(d) GX pandas engine, COMPLETE"}
        code = {"bare": BARE, "arrow": ARROW, "duckdb": DUCKDB, "gx": GX}
        runs: dict[str, list[dict]] = {k: [] for k in names}
        for i in range(args.repeat):
            for key in names:
                runs[key].append(run_contender(code[key], cfg, str(BIG_DAY)))
            print(f"round {i + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1]['seconds']:.2f}s" for k, v in runs.items()))
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        print(f"\n{'contender':<38}{'median s':>10}{'/ (a)':>8}{'quarantined':>13}")
        for key, label in names.items():
            q = runs[key][0].get("quarantined", "")
            print(f"{label:<38}{med[key]:>10.3f}{med[key] / med['bare']:>8.3f}{q!s:>13}")


if __name__ == "__main__":
    main()
