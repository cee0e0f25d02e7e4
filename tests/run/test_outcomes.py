"""`scoring outcomes`: labels arriving in three waves joined to the published predictions of two scoring days,
for a binary (with a challenger and quarantined rows), a multiclass and a regression model, on DuckDB and on
PostgreSQL. After each wave every (day, version) row's metrics equal scikit-learn's on the joined rows,
computed here from the model's own output on the source rows; a rerun changes nothing; labels of quarantined
rows and of keys never scored are counted."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.run import run_day
from scoring.run.outcomes import compute_outcomes
from tests.models.cases import START, cases, day_rows, make_frame
from tests.models.test_contract import duckdb_source, fit_and_save, register, write_cfg

runner = CliRunner()
CASES = {c.name: c for c in cases()}
DAYS = [START + dt.timedelta(days=4), START + dt.timedelta(days=5)]
UNSCORED = [10_000_001, 10_000_002, 10_000_003]
TABLES = ("outcomes", "label_coverage")


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory, truth: pd.DataFrame) -> Path:
    path = tmp_path_factory.mktemp("outcomes") / "events.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("frame", truth)
        con.execute("CREATE TABLE events AS SELECT * FROM frame")
    return path


SEEN_AT = "seen at (UTC)"


def waves(truth: pd.DataFrame, label: str) -> list[pd.DataFrame]:
    """Cumulative label tables: a third of day 4; then all of day 4, the even keys of day 5 and three keys
    never scored; then everything. Observed at noon of the day after the scoring day."""
    rows = []
    for day in DAYS:
        part = day_rows(truth, day)
        rows.append(pd.DataFrame({"event_id": part["id"], "outcome": part[label],
                                  "seen_at": pd.Timestamp(day + dt.timedelta(days=1)) + pd.Timedelta(hours=12)}))
    d4, d5 = rows
    stray = pd.DataFrame({"event_id": UNSCORED, "outcome": d5["outcome"].iloc[:3].to_numpy(),
                          "seen_at": pd.Timestamp(DAYS[1]) + pd.Timedelta(hours=20)})
    first = d4.iloc[: len(d4) // 3]
    second = pd.concat([d4, d5[d5["event_id"] % 2 == 0], stray])
    third = pd.concat([d4, d5, stray])
    return [first, second, third]


def write_labels(labels: pd.DataFrame, kind: str, where: str) -> None:
    labels = labels.rename(columns={"seen_at": SEEN_AT})  # a column name that needs quoting
    if kind == "duckdb":
        with duckdb.connect(where) as con:
            con.register("frame", labels)
            con.execute("CREATE OR REPLACE TABLE outcomes_in AS SELECT * FROM frame")
        return
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    url, schema = where.split("|")
    with pg.connect(url) as con, con.cursor() as cur:
        cur.adbc_ingest("outcomes_in", pa.Table.from_pandas(labels, preserve_index=False), mode="replace",
                        db_schema_name=schema)
        con.commit()


def expected_metrics(task: str, own: np.ndarray, y: pd.Series, classes: list, threshold: float = 0.5) -> dict:
    """scikit-learn's metrics on the joined rows, written out here."""
    if task == "regression":
        out = {"rmse": float(np.sqrt(skm.mean_squared_error(y, own))), "mae": skm.mean_absolute_error(y, own)}
        return {**out, "r2": skm.r2_score(y, own)}
    if task == "binary":
        p = own[:, 1]
        t = y.astype(int).to_numpy()
        return {"roc_auc": skm.roc_auc_score(t, p), "log_loss": skm.log_loss(t, p), "brier": skm.brier_score_loss(t, p),
                "positive_rate": t.mean(), "accuracy": np.mean((p >= threshold) == t)}
    index = np.array([classes.index(v) for v in y])
    return {"accuracy": np.mean(own.argmax(axis=1) == index), "log_loss": skm.log_loss(index, own, labels=range(3)),
            "macro_f1": skm.f1_score(index, own.argmax(axis=1), average="macro", labels=range(3))}


def read_tables(cfg) -> dict[str, pd.DataFrame]:
    from scoring.storage.results import open_results

    store = open_results(cfg.results)
    return {t: store.query(f"SELECT * FROM {store.table_name(t)} ORDER BY ALL" if cfg.results.kind == "duckdb"
                           else f"SELECT * FROM {store.table_name(t)} ORDER BY 1, 2, 3").to_pandas() for t in TABLES}


def published_keys(cfg, table: str, day: dt.date) -> dict[int, list[str]]:
    from scoring.storage.results import open_results

    store = open_results(cfg.results)
    rows = store.query(f"SELECT source_key, model_version FROM {store.table_name(table)} WHERE day = $1",
                       [day]).to_pandas()
    return {int(v): sorted(g["source_key"]) for v, g in rows.groupby("model_version")}


def quarantined(cfg, day: dt.date) -> set[str]:
    from scoring.storage.results import open_results

    store = open_results(cfg.results)
    return set(store.query(f"SELECT source_key FROM {store.table_name('quarantine')} WHERE day = $1",
                           [day]).to_pandas()["source_key"])


def scenario(name: str, tmp_path: Path, truth: pd.DataFrame, source_db: Path, kind: str,
             pg: tuple[str, str] | None = None) -> None:
    case = CASES[name]
    labels_where = str(tmp_path / "labels.duckdb") if kind == "duckdb" else f"{pg[0]}|{pg[1]}"
    labels = {"kind": kind, "table": "outcomes_in" if kind == "duckdb" else f"{pg[1]}.outcomes_in",
              "key_column": "event_id", "label_column": "outcome", "observed_at_column": SEEN_AT,
              **({"path": labels_where} if kind == "duckdb" else {"url": pg[0]})}
    results = {"kind": "duckdb", "path": str(tmp_path / "results.duckdb"), "staging_dir": str(tmp_path / "staging")} \
        if kind == "duckdb" else {"kind": "postgres", "url": pg[0], "schema": pg[1],
                                  "staging_dir": str(tmp_path / "staging")}
    challenger = case.task == "binary"
    cfg_path = write_cfg(tmp_path, duckdb_source(source_db), case.name, results, output=case.output, labels=labels,
                         **({"model": {"store": str(tmp_path / "models"), "name": case.name, "alias": "champion",
                                       "threshold": 0.5, "challengers": ["challenger"]}} if challenger else {}))
    model, artifact, data = fit_and_save(case, truth, tmp_path)
    assert register(cfg_path, case, artifact, data).exit_code == 0
    models = {1: model}
    if challenger:  # version 2: fitted on half the training rows, shadow-scored as a challenger
        half = pd.read_parquet(data).iloc[::2].reset_index(drop=True)
        models[2] = case.fit(half)
        joblib.dump(models[2], tmp_path / "challenger.joblib")
        res = runner.invoke(app, ["models", "register", "--name", case.name, "--artifact",
                                  str(tmp_path / "challenger.joblib"), "--training-data", str(data), "--label",
                                  case.label, "--alias", "challenger", *case.register, "--config", str(cfg_path)])
        assert res.exit_code == 0, res.output
    cfg = load_config(cfg_path)
    for day in DAYS:
        run_day(cfg, day)
    held = {day: quarantined(cfg, day) for day in DAYS}
    if name == "raises_on_some_rows":
        assert held[DAYS[1]], "the scenario needs quarantined rows on day 5"
    classes = sorted(truth[case.label].unique().tolist())
    previous = None
    for wave, labels_frame in enumerate(waves(truth, case.label), start=1):
        write_labels(labels_frame, kind, labels_where)
        result = compute_outcomes(cfg, DAYS[0], DAYS[1])
        tables = read_tables(cfg)
        out = tables["outcomes"]
        got_labels = dict(zip(labels_frame["event_id"].astype(str), labels_frame["outcome"], strict=True))
        checked = 0
        for day in DAYS:
            for table, role in (("predictions", "champion"), ("shadow_predictions", "challenger")):
                for version, keys in published_keys(cfg, table, day).items():
                    row = out[(out["day"] == pd.Timestamp(day).date()) & (out["model_version"] == version)]
                    if not len(row):  # DuckDB dates read back as datetime64
                        row = out[(pd.to_datetime(out["day"]) == pd.Timestamp(day)) & (out["model_version"] == version)]
                    assert len(row) == 1, (day, version, out)
                    row = row.iloc[0]
                    assert row["role"] == role and row["rows_scored"] == len(keys)
                    joined = [k for k in keys if k in got_labels]
                    assert row["labelled"] == len(joined), (wave, day, version)
                    assert row["coverage"] == pytest.approx(len(joined) / len(keys), abs=1e-12)
                    if role == "champion":
                        assert row["labels_quarantined"] == len([k for k in held[day] if k in got_labels])
                    got = json.loads(row["metrics"]) if isinstance(row["metrics"], str) else row["metrics"]
                    if not joined:
                        assert got == {}
                        continue
                    frame = truth.set_index(truth["id"].astype(str)).loc[joined]
                    x = case.given(frame.reset_index(drop=True))
                    own = models[version].predict(x) if case.task == "regression" else models[version].predict_proba(x)
                    expect = expected_metrics(case.task, np.asarray(own, dtype=float),
                                              pd.Series([got_labels[k] for k in joined]), classes)
                    for metric, value in expect.items():
                        assert abs(got[metric] - value) <= 1e-9, (wave, day, version, metric, got[metric], value)
                    assert got["rows"] == len(joined)
                    checked += 1
        assert checked == len(models) * (1 if wave == 1 else 2)  # wave 1 labels day 4 only
        cov = tables["label_coverage"]
        day5 = cov[pd.to_datetime(cov["day"]) == pd.Timestamp(DAYS[1])]
        if wave >= 2:  # labels observed on day 5: day 4's plus the three strays, never scored
            assert int(day5["unscored"].iloc[0]) == len(UNSCORED)
            assert int(day5["labels"].iloc[0]) == int((pd.to_datetime(labels_frame["seen_at"]).dt.date
                                                       == DAYS[1]).sum())
        assert sum(r["unscored"] for r in result.coverage) == (0 if wave == 1 else len(UNSCORED))
        # a rerun with the same labels writes the same rows (computed_at aside)
        compute_outcomes(cfg, DAYS[0], DAYS[1])
        again = read_tables(cfg)
        for t in TABLES:
            pd.testing.assert_frame_equal(again[t].drop(columns="computed_at"), tables[t].drop(columns="computed_at"))
        if previous is not None:
            assert (out["labelled"].sum() > previous["labelled"].sum())
        previous = out
    if case.task == "binary":  # CBPE estimate beside the realized metrics
        est = json.loads(out["estimated"].iloc[0])
        assert 0.0 <= est["roc_auc"] <= 1.0 and est["rows"] == out["rows_scored"].iloc[0]
    # the report's performance section shows the same rows, realized and estimated side by side
    from scoring.reports.data import load_report
    from scoring.reports.html import render_html
    from scoring.reports.outputs import performance_rows
    from scoring.storage.results import open_results

    data = load_report(cfg, open_results(cfg.results), DAYS[0], DAYS[1])
    perf = performance_rows(data.sections["performance"].to_pylist())
    assert sorted((str(r["day"]), r["model_version"], r["labelled"]) for r in perf) == sorted(
        (str(pd.Timestamp(d).date()), int(v), int(n)) for d, v, n in zip(out["day"], out["model_version"],
                                                                       out["labelled"], strict=True))
    headline = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}[case.task]
    assert all(headline in r["realized"] for r in perf)
    page = render_html(data)  # a regression's reference is a numeric one (quantile edges, point masses)
    assert 'id="performance"' in page and headline in page


@pytest.mark.parametrize("name", ["raises_on_some_rows", "multiclass", "regression_ridge"])
def test_outcomes_in_three_waves_duckdb(name: str, tmp_path: Path, truth: pd.DataFrame, source_db: Path) -> None:
    scenario(name, tmp_path, truth, source_db, "duckdb")


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["raises_on_some_rows", "multiclass", "regression_ridge"])
def test_outcomes_in_three_waves_postgres(name: str, tmp_path: Path, truth: pd.DataFrame, source_db: Path,
                                          pg_url: str, pg_schema: str) -> None:
    scenario(name, tmp_path, truth, source_db, "postgres", (pg_url, pg_schema))


def test_outcomes_without_labels_section_is_one_line(tmp_path: Path, source_db: Path) -> None:
    cfg = write_cfg(tmp_path, duckdb_source(source_db), "binary")
    res = runner.invoke(app, ["outcomes", "--start", "2026-05-05", "--end", "2026-05-06", "--config", str(cfg)])
    assert res.exit_code != 0
    assert "no 'labels' section" in res.output and "Traceback" not in res.output


def test_an_alerting_day_is_a_ledger_row_and_the_export_holds_the_outcomes(tmp_path: Path, truth: pd.DataFrame,
                                                                            source_db: Path) -> None:
    """Labels that contradict day 5's scores (flipped) put day 5 out of its band: a `runs` row with trigger
    `outcomes` and status alert, shown by `scoring runs`; the true labels recomputed remove it, and the batch
    runs' rows are untouched. The reader export holds `outcomes` and `label_coverage` as the results do."""
    from scoring.storage.results import open_results

    case = CASES["binary"]
    labels = {"kind": "duckdb", "path": str(tmp_path / "labels.duckdb"), "table": "outcomes_in",
              "key_column": "event_id", "label_column": "outcome", "observed_at_column": SEEN_AT}
    results = {"kind": "duckdb", "path": str(tmp_path / "results.duckdb"), "staging_dir": str(tmp_path / "staging")}
    cfg_path = write_cfg(tmp_path, duckdb_source(source_db), case.name, results, output=case.output, labels=labels)
    _, artifact, data = fit_and_save(case, truth, tmp_path)
    assert register(cfg_path, case, artifact, data).exit_code == 0
    cfg = load_config(cfg_path)
    for day in DAYS:
        run_day(cfg, day)
    store = open_results(cfg.results)
    batch_runs = store.query("SELECT run_id, status FROM runs ORDER BY run_id").to_pylist()
    true_labels = waves(truth, case.label)[-1]
    flipped = true_labels.copy()
    on_day5 = pd.to_datetime(flipped["seen_at"]).dt.date == DAYS[1] + dt.timedelta(days=1)
    flipped.loc[on_day5, "outcome"] = 1 - flipped.loc[on_day5, "outcome"]
    write_labels(flipped, "duckdb", labels["path"])
    result = compute_outcomes(cfg, DAYS[0], DAYS[1])
    judged = {(str(r["day"]), r["model_version"]): r["status"] for r in result.outcomes}
    assert judged[(str(DAYS[1]), 1)] == "alert" and judged[(str(DAYS[0]), 1)] not in ("warning", "alert")
    ledger = store.query("SELECT * FROM runs WHERE \"trigger\" = 'outcomes'").to_pylist()
    assert [(str(r["day"]), r["model_version"], r["status"]) for r in ledger] == [(str(DAYS[1]), 1, "alert")]
    assert "realized roc_auc" in ledger[0]["error"] and "outside its alert band" in ledger[0]["error"]
    res = runner.invoke(app, ["runs", "--config", str(cfg_path)], env={"COLUMNS": "80"})
    assert res.exit_code == 0 and f"{DAYS[1]} {case.name} v1 (alert, run outcomes:" in res.output, res.output
    # the reader export: the same outcomes rows as the results, through the catalog's views
    export = store.export_dir
    with duckdb.connect(str(export / "catalog.duckdb"), read_only=True,
                        config={"file_search_path": str(export)}) as con:
        exported = con.execute("SELECT day, model_version, labelled, status FROM outcomes ORDER BY ALL").fetchall()
        assert con.execute("SELECT count(*) FROM label_coverage").fetchone()[0] == len(result.coverage)
        assert con.execute("SELECT count(*) FROM runs WHERE \"trigger\" = 'outcomes'").fetchone()[0] == 1
    assert exported == [(r["day"], r["model_version"], r["labelled"], r["status"])
                        for r in sorted(result.outcomes, key=lambda r: (r["day"], r["model_version"]))]
    from scoring.reports.data import load_report
    from scoring.reports.html import render_html

    report = load_report(cfg, store, DAYS[0], DAYS[1])  # the alert is in the performance section, not a run
    assert [r["trigger"] for r in report.runs.to_pylist()] == ["cli", "cli"]
    assert [r["status"] for r in report.sections["performance"].to_pylist() if str(r["day"]) == str(DAYS[1])] \
        == ["alert"]
    assert 'id="performance"' in render_html(report)
    write_labels(true_labels, "duckdb", labels["path"])  # the true labels: back in the band, the row goes
    compute_outcomes(cfg, DAYS[0], DAYS[1])
    assert store.query("SELECT count(*) AS n FROM runs WHERE \"trigger\" = 'outcomes'").to_pylist()[0]["n"] == 0
    assert store.query("SELECT run_id, status FROM runs ORDER BY run_id").to_pylist() == batch_runs


@pytest.mark.postgres
def test_outcome_ledger_rows_replace_only_their_own_on_postgres(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    """On PostgreSQL, the outcomes' ledger rows are replaced with their window and never touch a run's row;
    naming the ledger without the trigger is refused."""
    import pyarrow as pa

    from scoring.config import ResultsConfig
    from scoring.run.outcomes import LEDGER_TRIGGER, _ledger_row, _schema
    from scoring.storage.results import RunRecord, open_results
    from scoring.storage.results.tables import RUNS

    store = open_results(ResultsConfig(kind="postgres", url=pg_url, schema=pg_schema,
                                       staging_dir=str(tmp_path / "staging")))
    store.ensure_schema()
    now = dt.datetime.now(dt.UTC)
    store.start_run(RunRecord("batch-run", DAYS[1], "m", 1, now))
    alert = {"day": DAYS[1], "model_name": "m", "model_version": 1, "role": "champion", "status": "alert",
             "labelled": 10, "rows_scored": 12, "coverage": 10 / 12,
             "alerts": json.dumps([{"metric": "roc_auc", "kind": "realized", "value": 0.2, "status": "alert",
                                    "band": [0.7, 0.9]}])}

    def replace(rows: list[dict]) -> list[dict]:
        store.replace_days("m", DAYS[0], DAYS[1], {RUNS.name: pa.Table.from_pylist(rows, _schema(RUNS))},
                           ledger_trigger=LEDGER_TRIGGER)
        return store.query(f"SELECT run_id, status, \"trigger\", error FROM {store.table_name('runs')} "
                           "ORDER BY run_id").to_pylist()

    got = replace([_ledger_row(alert, now)])
    assert [(r["run_id"], r["status"]) for r in got] == [("batch-run", "running"),
                                                         (f"outcomes:m:{DAYS[1]}:v1:champion", "alert")]
    assert "realized roc_auc 0.2000 outside its alert band [0.7000, 0.9000]" in got[1]["error"]
    assert [r["run_id"] for r in replace([])] == ["batch-run"]
    with pytest.raises(ValueError, match="only with ledger_trigger"):
        store.replace_days("m", DAYS[0], DAYS[1], {RUNS.name: pa.Table.from_pylist([], _schema(RUNS))})
