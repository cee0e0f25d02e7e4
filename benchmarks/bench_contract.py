"""Cost of the model contract: the dtype conversion per 1M rows and the parity check at registration.

Side by side in one run, medians of ``--repeat`` rounds:

- (a) Arrow -> pandas with ``Table.to_pandas()`` (what scoring did before the contract; it hands a nullable
  boolean over as objects with ``None`` and categories as strings: the wrong inputs for some models);
- (b) Arrow -> pandas with ``convert.to_model_frame`` (the registered dtypes, levels and missing values);
- (c) the model's ``predict_proba`` on the converted frame, for scale;
- (d) the parity check of the registration (2,000 sampled rows through pandas -> Arrow -> DuckDB -> model).

    .venv/bin/python benchmarks/bench_contract.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def frame(rows: int):  # noqa: ANN201 - benchmark script
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    flag = pd.array(rng.random(rows) < 0.5, dtype="boolean")
    flag[rng.random(rows) < 0.2] = pd.NA
    visits = pd.array(rng.integers(0, 9, rows), dtype="Int64")
    visits[rng.random(rows) < 0.15] = pd.NA
    x1 = rng.normal(0, 1, rows)
    x1[rng.random(rows) < 0.05] = np.nan
    return pd.DataFrame({
        "x1": x1, "x2": rng.integers(0, 50, rows), "x3": rng.gamma(2.0, 2.0, rows),
        "region": pd.Series(rng.choice(["north", "south", "east", "west"], rows)).astype(
            pd.CategoricalDtype(["east", "north", "south", "west"])),
        "state": pd.Series(rng.choice([f"s{i}" for i in range(50)], rows), dtype="str"),
        "flag": flag, "visits": visits,
        "y": (rng.random(rows) < 0.3).astype(int),
    })


def timed(fn, repeat: int) -> tuple[float, object]:  # noqa: ANN001 - benchmark script
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import duckdb
    import pyarrow as pa
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from scoring.models.convert import to_model_frame
    from scoring.models.parity import parity_check
    from scoring.models.registry import build_contract

    data = frame(args.rows)
    inputs = [c for c in data.columns if c != "y"]
    train = data.iloc[:50_000]
    encode = ColumnTransformer([("levels", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                                 ["region", "state", "flag"])], remainder="passthrough").set_output(transform="pandas")
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=50, random_state=0))
    model.fit(train[inputs], train["y"])
    contract = build_contract(model, train, "bench")
    with duckdb.connect() as con:  # the day as a source delivers it (DuckDB -> Arrow)
        con.register("day", pa.Table.from_pandas(data[inputs], preserve_index=False))
        table = con.sql("SELECT * FROM day").to_arrow_table()

    plain_s, _ = timed(lambda: table.to_pandas(), args.repeat)
    convert_s, converted = timed(lambda: to_model_frame(table, contract.inputs)[0], args.repeat)
    predict_s, _ = timed(lambda: model.predict_proba(converted), 1)
    parity_s, result = timed(lambda: parity_check(model, train, contract, "bench"), args.repeat)
    per_m = 1_000_000 / args.rows
    print(f"rows {args.rows:,}; {len(inputs)} inputs (float, int, category, str, nullable boolean, Int64)")
    print(f"(a) Table.to_pandas()            {plain_s:8.3f} s  ({plain_s * per_m:.3f} s per 1M rows)")
    print(f"(b) to_model_frame (contract)    {convert_s:8.3f} s  ({convert_s * per_m:.3f} s per 1M rows)")
    print(f"(c) predict_proba, for scale     {predict_s:8.3f} s")
    print(f"(d) parity check at registration {parity_s:8.3f} s  ({result['rows']} rows, max |diff| "
          f"{result['max_abs_diff']:.1e})")
    print(f"ratios: (b)/(a) {convert_s / plain_s:.2f}; conversion overhead vs predict "
          f"{(convert_s - plain_s) / predict_s:+.1%}")


if __name__ == "__main__":
    main()
