"""Generate a seeded loan-application table in a DuckDB file, one day at a time.

Each day's rows depend only on (seed, day), so regenerating a day gives the same rows.
Features carry nulls, outliers and impossible values; a few categorical levels only appear in the
last third of the generated range, so a model trained on the first part sees them as unknown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

logger = logging.getLogger(__name__)

TABLE = "loan_applications"
STATES = ["CA", "TX", "NY", "FL", "IL", "PA", "OH", "GA", "NC", "MI", "NJ", "VA", "WA", "AZ", "MA", "TN",
          "IN", "MO", "MD", "WI", "CO", "MN", "SC", "AL", "LA", "KY", "OR", "OK", "CT", "UT", "IA", "NV"]
NEW_STATES = ["PR", "GU"]
PURPOSES = ["debt_consolidation", "credit_card", "home_improvement", "major_purchase", "medical",
            "car", "small_business", "vacation", "moving", "wedding"]
NEW_PURPOSES = ["green_energy"]
HOME = ["rent", "mortgage", "own", "other"]
EMPLOYMENT = ["salaried", "self_employed", "contract", "retired", "student", "unemployed"]


def _choice(rng: np.random.Generator, levels: list[str], n: int, skew: float = 1.2) -> np.ndarray:
    weights = 1.0 / np.arange(1, len(levels) + 1) ** skew
    return rng.choice(np.array(levels, dtype=object), size=n, p=weights / weights.sum())


def _with_nulls(rng: np.random.Generator, values: np.ndarray, share: float) -> pa.Array:
    mask = rng.random(values.shape[0]) < share
    return pa.array(values, mask=mask)


def generate_day(day: dt.date, rows: int, seed: int = 42, new_levels: bool = False) -> pa.Table:
    """Rows for one day, as an Arrow table; deterministic in (day, rows, seed, new_levels)."""
    rng = np.random.default_rng([seed, day.toordinal()])
    n = rows
    ids = np.int64(day.toordinal()) * 100_000_000 + np.arange(n, dtype=np.int64)
    start = np.datetime64(day.isoformat(), "us")
    ts = start + rng.integers(0, 86_400_000_000, n).astype("timedelta64[us]")

    age = rng.normal(42, 12, n).clip(18, 90).round()
    income = np.exp(rng.normal(10.9, 0.6, n)).round(2)
    loan = (income * rng.uniform(0.05, 0.6, n)).round(2)
    credit = rng.normal(690, 60, n).clip(300, 850).round()
    dti = rng.beta(2, 5, n) * 60
    emp_years = rng.exponential(6, n).clip(0, 45).round(1)
    open_acc = rng.poisson(8, n).astype(np.float64)
    delinq = rng.poisson(0.3, n).astype(np.float64)

    state = _choice(rng, STATES, n)
    purpose = _choice(rng, PURPOSES, n)
    home = _choice(rng, HOME, n, skew=0.8)
    employment = _choice(rng, EMPLOYMENT, n, skew=1.5)
    if new_levels:
        state[rng.random(n) < 0.01] = NEW_STATES[0]
        state[rng.random(n) < 0.005] = NEW_STATES[1]
        purpose[rng.random(n) < 0.02] = NEW_PURPOSES[0]

    logit = (-1.2 + (650 - credit) / 45 + (dti - 20) / 15 + 0.6 * delinq + 0.8 * (loan / income)
             - 0.03 * emp_years + np.where(employment == "unemployed", 0.9, 0.0)
             + np.where(purpose == "small_business", 0.5, 0.0) + np.where(home == "own", -0.3, 0.0))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)

    # Dirty the inputs after the label is drawn: impossible values and outliers, then nulls.
    age[rng.random(n) < 0.002] = 999
    income[rng.random(n) < 0.003] *= -1
    income[rng.random(n) < 0.001] *= 50
    credit[rng.random(n) < 0.001] = 9999
    neg = rng.random(n) < 0.001
    loan[neg] = -loan[neg]

    return pa.table({
        "application_id": pa.array(ids),
        "applied_at": pa.array(ts, pa.timestamp("us")),
        "age": _with_nulls(rng, age, 0.01),
        "annual_income": _with_nulls(rng, income, 0.03),
        "loan_amount": pa.array(loan),
        "credit_score": _with_nulls(rng, credit, 0.02),
        "debt_to_income": _with_nulls(rng, dti.round(2), 0.01),
        "employment_years": _with_nulls(rng, emp_years, 0.05),
        "open_accounts": pa.array(open_acc),
        "delinquencies": _with_nulls(rng, delinq, 0.01),
        "state": pa.array(state, pa.string()),
        "loan_purpose": pa.array(purpose, pa.string()),
        "home_ownership": _with_nulls(rng, home, 0.02).cast(pa.string()),
        "employment_type": pa.array(employment, pa.string()),
        "defaulted": pa.array(label),
    })


def generate(path: Path, start: dt.date, days: int, rows_per_day: int, seed: int = 42,
             table: str = TABLE) -> int:
    """Write ``days`` days starting at ``start`` into ``table`` of the DuckDB file at ``path``.

    Existing rows of those days are replaced, so the generator is idempotent. Returns rows written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    new_from = days - max(1, days // 3)
    total = 0
    with duckdb.connect(str(path)) as con:
        for i in range(days):
            day = start + dt.timedelta(days=i)
            batch = generate_day(day, rows_per_day, seed=seed, new_levels=i >= new_from)
            con.register("batch", batch)
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchall()[0][0]
            if not exists:
                con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM batch')  # noqa: S608 - constant name
            else:
                con.execute(f'DELETE FROM "{table}" WHERE applied_at >= ? AND applied_at < ?',  # noqa: S608
                            [dt.datetime.combine(day, dt.time()), dt.datetime.combine(day, dt.time())
                             + dt.timedelta(days=1)])
                con.execute(f'INSERT INTO "{table}" SELECT * FROM batch')  # noqa: S608
            con.unregister("batch")
            total += batch.num_rows
            logger.info("generated %s rows for %s", batch.num_rows, day)
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample_data/sample.duckdb"))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=None,
                        help="last day (default: yesterday, UTC)")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    end = args.end or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    start = end - dt.timedelta(days=args.days - 1)
    total = generate(args.out, start, args.days, args.rows_per_day, seed=args.seed)
    logger.info("wrote %s rows (%s .. %s) to %s", total, start, end, args.out)


if __name__ == "__main__":
    main()
