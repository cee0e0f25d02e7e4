"""Challengers honest about what they scored: a challenger's own gate results are recorded and shown by
`models compare`; the promotion gate fails a candidate quarantining more than the champion beyond
`promotion.max_quarantine_excess`, naming the rule; `train`/`register --alias` move the champion alias only
through the gate, `--force --reason` the one way past it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from typer.testing import CliRunner

from scoring.cli import app
from scoring.config import load_config
from scoring.models.registry import register_model
from scoring.models.store import ModelStore
from scoring.run import run_day
from tests.cicd.test_gate import NAME, WINDOW, _alias, _training
from tests.conftest import SCORE_DAY, write_config
from tests.helpers import ledger, source_day
from tests.helpers import user_module as load_user_module

runner = CliRunner()
USER_CODE = Path(__file__).resolve().parent / "user_code" / "picky_udf.py"


def _user_module() -> Any:
    """The user's own module ``picky_udf`` (registered with ``--code``)."""
    return load_user_module("picky_udf", USER_CODE)


def _challenger(store: Path, tmp_path: Path, sample_db: Path) -> tuple[int, Path, pd.DataFrame]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame = _training(sample_db)
    udf = _user_module()
    frame = frame[frame["credit_score"] >= udf.CUT].reset_index(drop=True)
    model = make_pipeline(FunctionTransformer(udf.refuse_low_scores), LogisticRegression(max_iter=500))
    model.fit(frame[udf.COLS], frame["defaulted"])
    path = tmp_path / "picky.joblib"
    joblib.dump(model, path)
    return register_model(ModelStore(store), NAME, path, frame, label_column="defaulted",
                          code=[USER_CODE]).version, path, frame


def test_challenger_quarantine_is_recorded_shown_and_gated(tmp_path: Path, sample_db: Path, store: Path) -> None:
    version, artifact, frame = _challenger(store, tmp_path, sample_db)
    cfg_path = write_config(tmp_path, sample_db, store, model={"store": str(store), "name": NAME,
                                                               "challengers": [str(version)]},
                            promotion={"metric": "roc_auc", "tolerance": 1.0})
    result = run_day(load_config(cfg_path), SCORE_DAY)
    day = source_day(sample_db, SCORE_DAY)
    low = int((day["credit_score"] < _user_module().CUT).sum())
    assert low > 0.05 * len(day)
    entry = json.loads(ledger(tmp_path / "results.duckdb").iloc[-1]["details"])["shadow"][str(version)]
    assert entry["rows_in"] == result.rows_in == len(day)
    assert entry["quarantined"] == low + result.rows_rejected and entry["rows"] == len(day) - entry["quarantined"]
    assert any(rule.startswith("model_error") and n == low for rule, n in entry["rules"].items())
    # models compare shows the challenger's own quarantine beside the champion's
    res = runner.invoke(app, ["models", "compare", "--start", str(SCORE_DAY), "--end", str(SCORE_DAY), "--json",
                              "-c", str(cfg_path)])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)[0]
    assert shown["quarantined"] == entry["quarantined"] and shown["champion_quarantined"] == result.rows_rejected
    # so does the report's challenger section (highlighted: it set aside more than the champion)
    from scoring.reports.data import load_report
    from scoring.reports.html import render_html
    from scoring.storage.results import open_results

    cfg = load_config(cfg_path)
    report = load_report(cfg, open_results(cfg.results), SCORE_DAY, SCORE_DAY)
    row, = report.sections["challengers"].to_pylist()
    assert (row["model_version"], row["rows_in"], row["quarantined"]) == (version, len(day), entry["quarantined"])
    assert row["champion_quarantined"] == result.rows_rejected and row["rank_correlation"] == shown["rank_correlation"]
    assert "model_error" in row["rules"] and f"({low})" in row["rules"]
    page = render_html(report)
    section = page[page.index('<section id="challengers">'):]
    section = section[:section.index("</section>")]
    assert '<tr class="failed">' in section and f"<td>{entry['quarantined']:,}</td>" in section, section
    # the gate fails it on the quarantine rule, naming it; promote refuses; --force --reason passes
    res = runner.invoke(app, ["models", "check", NAME, str(version), "-c", str(cfg_path), *WINDOW])
    text = " ".join(res.output.split())
    assert res.exit_code == 1
    rate = entry["quarantined"] / entry["rows_in"]
    assert (f"FAILED quarantine: quarantined {entry['quarantined']} of {entry['rows_in']} rows ({rate:.1%}) on 1 "
            f"shadow day(s)") in text
    assert "more than promotion.max_quarantine_excess 0.01 above it; rules: model_error" in text
    res = runner.invoke(app, ["models", "promote", NAME, str(version), "-c", str(cfg_path), *WINDOW])
    assert res.exit_code == 1 and "refused: quarantine" in " ".join(res.output.split())
    assert _alias(store) == 1
    # register --alias champion goes through the same gate: refused, registered without the alias
    data = tmp_path / "train.parquet"
    frame.to_parquet(data)
    base = ["models", "register", "--name", NAME, "--artifact", str(artifact), "--training-data", str(data),
            "--label", "defaulted", "--alias", "champion", "--day-rows", "600", "--code", str(USER_CODE),
            "-c", str(cfg_path)]
    res = runner.invoke(app, base)
    assert res.exit_code == 1 and "refused: champion" in " ".join(res.output.split()), res.output
    newest = max(mv.version for mv in ModelStore(store).versions(NAME))
    assert _alias(store) == 1 and newest > version
    res = runner.invoke(app, [*base, "--force", "--reason", "incident 42: roll forward"])
    assert res.exit_code == 0, res.output
    assert _alias(store) == newest + 1
    last = ModelStore(store).history(NAME)[-1]
    assert last["forced"] is True and last["reason"] == "incident 42: roll forward"
