from __future__ import annotations

import datetime as dt
from pathlib import Path

from typer.testing import CliRunner

from scoring.cli import app
from tests.conftest import SCORE_DAY
from tests.helpers import ledger, published

runner = CliRunner()


def test_run_prints_what_landed(cfg_path: Path, cfg) -> None:
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    n = len(published(cfg.results.path, SCORE_DAY))
    assert "rows in" in res.output and str(n) in res.output and "first 5 predictions" in res.output


def test_run_prints_its_result_once(cfg_path: Path, cfg) -> None:
    """The command's terminal (stdout and the log on stderr, as a user sees them) names the run once: the
    table, not also the engine's result log line."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "scoring.cli", "run", "--config", str(cfg_path), "--date",
                           str(SCORE_DAY)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    run_id = ledger(cfg.results.path)["run_id"].iloc[-1]
    assert (done.stdout + done.stderr).count(run_id) == 1, (done.stdout, done.stderr)
    assert "scored" in done.stdout


def test_backfill_exit_code_counts_failed_days(cfg_path: Path, cfg, store: Path) -> None:
    res = runner.invoke(app, ["backfill", "--config", str(cfg_path), "--start", "2026-03-05", "--end", "2026-03-07"])
    assert res.exit_code == 0, res.output
    assert len(ledger(cfg.results.path)) == 3
    (store / "loan_default" / "1" / "model.joblib").write_bytes(b"x")
    res = runner.invoke(app, ["backfill", "--config", str(cfg_path), "--start", "2026-03-05", "--end", "2026-03-07"])
    assert res.exit_code == 3
    assert "3 of 3 days failed" in res.output


def test_user_mistakes_give_one_line_errors(cfg_path: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", "2026-13-45"])
    assert res.exit_code == 1 and "invalid date '2026-13-45'" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["run", "--config", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 1 and "not found" in res.output
    res = runner.invoke(app, ["backfill", "--config", str(cfg_path), "--start", "2026-03-06", "--end", "2026-03-07",
                              "--parallel", "0"])
    assert res.exit_code == 1 and "--parallel 0: give the number of days" in res.output
    res = runner.invoke(app, ["models", "show", "ghost", "--config", str(cfg_path)])
    assert res.exit_code == 1 and "unknown model 'ghost'" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg_path.read_text().replace("key_column: application_id", "key_column: 'id; drop table x'"))
    res = runner.invoke(app, ["run", "--config", str(bad)])  # any spelling is a quoted name, never SQL
    assert res.exit_code == 1 and "key column 'id; drop table x' is missing" in res.output, res.output
    same = tmp_path / "same.yaml"
    text = cfg_path.read_text()
    src = next(line.split(": ", 1)[1] for line in text.splitlines() if line.strip().startswith("path:"))
    same.write_text(text.replace(f"path: {tmp_path / 'results.duckdb'}", f"path: {src}"))
    res = runner.invoke(app, ["run", "--config", str(same)])
    assert res.exit_code == 1 and "results.path must differ from source.path" in res.output


def test_models_register_a_model_trained_elsewhere_and_promote(cfg_path: Path, store: Path, tmp_path: Path,
                                                               sample_db: Path) -> None:
    import joblib
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tests.helpers import source_day

    frame = source_day(sample_db, SCORE_DAY)
    cols = ["credit_score", "debt_to_income", "delinquencies"]
    model = make_pipeline(make_column_transformer((SimpleImputer(), cols)), LogisticRegression())
    model.fit(frame[cols], frame["defaulted"])
    joblib.dump(model, tmp_path / "mine.joblib")
    frame.to_parquet(tmp_path / "train.parquet")
    res = runner.invoke(app, ["models", "register", "--config", str(cfg_path), "--name", "loan_default",
                              "--artifact", str(tmp_path / "mine.joblib"), "--training-data",
                              str(tmp_path / "train.parquet"), "--label", "defaulted"])
    assert res.exit_code == 0, res.output
    assert "version 2" in res.output and "3 inputs" in res.output
    # No labelled rows in the default window (the last 7 days): the gate cannot compare with the champion.
    res = runner.invoke(app, ["models", "promote", "loan_default", "2", "--config", str(cfg_path)])
    assert res.exit_code == 1 and "refused: champion: roc_auc is undefined" in res.output
    res = runner.invoke(app, ["models", "promote", "loan_default", "2", "--config", str(cfg_path), "--force",
                              "--reason", "trained elsewhere on the newest day"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    from scoring.config import load_config

    out = published(load_config(cfg_path).results.path, SCORE_DAY)
    assert set(out["model_version"]) == {2}
    assert abs(out["score"].to_numpy() - model.predict_proba(frame.sort_values("application_id").assign(
        k=lambda f: f["application_id"].astype(str)).sort_values("k")[cols])[:, 1]).max() < 1e-9


def test_runs_fits_80_columns_one_line_per_run(cfg_path: Path, cfg, store: Path) -> None:
    import os
    import subprocess
    import sys

    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0, res.output
    (store / "loan_default" / "1" / "model.joblib").write_bytes(b"x")
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", "2026-03-06"])
    assert res.exit_code == 1 and "checksum mismatch" in res.output
    scoring = Path(sys.executable).parent / "scoring"
    out = subprocess.run([str(scoring), "runs", "--config", str(cfg_path)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    rows = [line for line in lines if line.startswith("2026-03-0")]
    assert len(rows) == 2, out.stdout  # one line per run: no cell folds
    assert "2026-03-06" in rows[0] and "failed" in rows[0] and "loan_default v1" in rows[0]
    n = len(published(cfg.results.path, SCORE_DAY))
    assert "success" in rows[1] and f"{n:,}" in rows[1]
    assert "checksum mismatch" in out.stdout[out.stdout.index(rows[1]) + len(rows[1]):]  # the error, under the table


def test_an_unexpected_error_is_one_line_and_verbose_shows_its_traceback(cfg_path: Path, monkeypatch,
                                                                          caplog) -> None:
    from scoring.run import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(pipeline, "run_day", broken)
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "unexpected RuntimeError: disk on fire (run with --verbose" in " ".join(res.output.split())
    assert "second line" not in res.output
    # --verbose logs the traceback at DEBUG (to stderr through the CLI's handler; here pytest captures the record)
    caplog.clear()
    res = runner.invoke(app, ["--verbose", "run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    logged = [r for r in caplog.records if r.name == "scoring.cli" and r.exc_info]
    assert res.exit_code == 1 and len(logged) == 1 and "second line" in str(logged[0].exc_info[1])
    caplog.clear()
    runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert not [r for r in caplog.records if r.name == "scoring.cli" and r.exc_info]


def test_hostile_inputs_give_one_line_naming_the_value_and_the_limit(cfg_path: Path, tmp_path: Path) -> None:
    """The bad inputs of issue 25: each refused before any work, one line naming the value and the limit."""
    dup = tmp_path / "dup.yaml"
    dup.write_text(cfg_path.read_text() + "workers: 2\nworkers: 3\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(cfg_path.read_bytes() + "# café\n".encode("latin-1"))
    (tmp_path / "rows.yaml").write_text("a: 1\n")
    cases = [
        (["run", "--date", "2026-03-06", "--rows-per-chunk", "-5"], "--rows-per-chunk -5: give 1 or more"),
        (["run", "--date", "2026-03-06", "--rows-per-chunk", "0"], "--rows-per-chunk 0: give 1 or more"),
        (["run", "--date", "9999-12-31"], "date 9999-12-31 is outside 1900-01-01 .. 2999-12-31"),
        (["backfill", "--start", "1900-01-01", "--end", "2026-01-01"],
         "is 46022 days, more than schedule.max_backfill_days (3660)"),
        (["backfill", "--start", "1726-01-01", "--end", "2026-01-01"], "date 1726-01-01 is outside 1900-01-01"),
        (["runs", "--limit", "-1"], "--limit -1: give the number of runs to show, 1 or more"),
        (["jobs", "submit", "--input", str(tmp_path / "rows.yaml")], "must be Parquet (.parquet) or CSV (.csv)"),
    ]
    for args, said in cases:
        res = runner.invoke(app, [*args, "--config", str(cfg_path)])
        assert res.exit_code == 1 and said in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output, res.output
    for bad, said in ((dup, "key 'workers' is given twice"), (latin, "is not UTF-8 text")):
        res = runner.invoke(app, ["runs", "--config", str(bad)])
        assert res.exit_code == 1 and said in res.output and len(res.output.strip().splitlines()) == 1, res.output
    # A source file cut short (a copy that did not finish): named, not "unexpected".
    from scoring.config import load_config

    source = load_config(cfg_path).source.path
    cut = tmp_path / "cut" / "source.duckdb"
    cut.parent.mkdir()
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    text = cfg_path.read_text().replace(f"path: {source}", f"path: {cut}")
    (tmp_path / "cut.yaml").write_text(text)
    res = runner.invoke(app, ["run", "--config", str(tmp_path / "cut.yaml"), "--date", "2026-03-06"])
    assert res.exit_code == 1 and "unexpected" not in res.output and str(cut) in res.output, res.output
    assert "Could not read enough bytes" in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_a_day_outside_the_sources_range_gets_a_warning_line(cfg_path: Path, sample_db: Path) -> None:
    """``--date`` and backfill ranges are bounded by the source's own days (its timestamp column's min..max in
    schedule.timezone), not a fixed calendar: a day outside them is scored (nothing) with one warning line
    naming the source's range; a day inside gets no warning."""
    import duckdb

    with duckdb.connect(str(sample_db), read_only=True) as con:
        first, last = con.sql("SELECT min(applied_at)::DATE, max(applied_at)::DATE FROM loan_applications").fetchall()[0]
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", "2062-03-06"])
    assert "Traceback" not in res.output, res.output
    warning = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert warning == [f"warning: 2062-03-06 is outside the days the source holds ({first} .. {last}, applied_at "
                       "in UTC): days without rows score nothing; check the date"], res.output
    res = runner.invoke(app, ["backfill", "--config", str(cfg_path), "--start", str(last),
                              "--end", str(last + dt.timedelta(days=2))])
    assert f"{last} .. {last + dt.timedelta(days=2)} is outside the days the source holds" in res.output, res.output
    res = runner.invoke(app, ["run", "--config", str(cfg_path), "--date", str(SCORE_DAY)])
    assert res.exit_code == 0 and "warning:" not in res.output, res.output
