"""`scoring train` and `scoring models ...`: fit, register, inspect and promote model versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from scoring.cli.app import ConfigOpt, app, console, handle_errors, load, models_app, step_progress
from scoring.errors import ScoringError


@app.command()
@handle_errors
def train(config: ConfigOpt = None,
          start: Annotated[str | None, typer.Option(help="first training day (default: config)")] = None,
          end: Annotated[str | None, typer.Option(help="last training day, inclusive")] = None,
          alias: Annotated[list[str] | None, typer.Option(help="aliases to point at the new version")] = None
          ) -> None:
    """Fit the configured features Pipeline on labelled source rows and register it."""
    from scoring.dates import parse_day
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    cfg = load(config)
    with step_progress("training") as step:
        mv = train_model(cfg, parse_day(start) if start else None, parse_day(end) if end else None,
                         aliases=alias if alias is not None else ["champion"], on_step=step)
        step("expectation suite")
        suite = write_version_suite(cfg, mv)
    console.print(f"registered [bold]{mv.name}[/] version {mv.version}; holdout metrics: "
                  f"{_metric_text(mv.meta['metrics'])}; expectation suite {suite}", highlight=False)


@models_app.command("list")
@handle_errors
def models_list(config: ConfigOpt = None) -> None:
    """Every model and version in the store, with aliases; each version's metrics under the table."""
    from scoring.models.store import ModelStore

    cfg = load(config)
    store = ModelStore(cfg.model.store)
    table = Table(title=f"models in {cfg.model.store}")
    table.add_column("name", overflow="fold")
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("aliases", overflow="fold")
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("estimator", overflow="fold")
    notes: list[str] = []
    for name in store.names():
        aliases = store.aliases(name)
        for mv in store.versions(name):
            tags = ", ".join(a for a, v in aliases.items() if v == mv.version)
            table.add_row(name, str(mv.version), tags, mv.meta["created_at"][:16].replace("T", " "),
                          mv.meta.get("estimator", ""))
            metrics = _metric_text(mv.meta.get("metrics"))
            if metrics:
                notes.append(f"{name} v{mv.version}: {metrics}")
    console.print(table)
    for line in notes:
        console.print(line, highlight=False)


def _metric_text(metrics: dict[str, Any] | None) -> str:
    """``roc_auc 0.8201, log_loss 0.3775, ...`` (4 decimals; counts as integers)."""
    out = []
    for key, value in (metrics or {}).items():
        if isinstance(value, float) and not value.is_integer():
            out.append(f"{key} {value:.4f}")
        else:
            out.append(f"{key} {value}")
    return ", ".join(out)


@models_app.command("show")
@handle_errors
def models_show(name: str, version: Annotated[int | None, typer.Option(help="default: champion")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="the raw metadata (without the "
                                                      "reference statistics) and alias history as JSON")] = False,
                config: ConfigOpt = None) -> None:
    """A summary of one version: contract, inputs, training, parity, metrics, aliases (--json: everything)."""
    from scoring.models.store import ModelStore

    cfg = load(config)
    store = ModelStore(cfg.model.store)
    mv = store.resolve(name, cfg.model.alias, version)
    history = store.history(name)
    if as_json:
        meta = {k: v for k, v in mv.meta.items() if k != "reference"}
        meta["alias_history"] = history
        console.print_json(json.dumps(meta, default=str))
        return
    for line in _summary(mv, store.aliases(name), history):
        console.print(line, highlight=False, soft_wrap=False)


def _summary(mv: Any, aliases: dict[str, int], history: list[dict[str, Any]]) -> list[str]:
    """The lines of ``models show``: one fact per line, long lists wrapped by the console."""
    meta, sig = mv.meta, mv.meta.get("signature") or {}
    tags = ", ".join(a for a, v in aliases.items() if v == mv.version) or "none"
    task = sig.get("task", "?")
    if task == "binary":
        task += f", positive class {sig.get('positive_class')!r}"
    lines = [f"{mv.name} version {mv.version}  (aliases: {tags})",
             f"  created     {str(meta.get('created_at', ''))[:19].replace('T', ' ')} UTC",
             f"  estimator   {meta.get('estimator', '?')}   sha256 {str(meta.get('sha256', ''))[:12]}",
             f"  task        {task}; classes {', '.join(map(str, meta.get('classes') or [])) or '-'}"]
    inputs = sig.get("inputs") or [{"name": f["name"], "dtype": f.get("type")} for f in meta.get("features", [])]
    described = [f"{i['name']} ({i.get('dtype', '?')}{', nullable' if i.get('nullable') else ''})" for i in inputs]
    lines.append(f"  inputs      {len(inputs)}: " + ", ".join(described))
    window = meta.get("training_window") or {}
    if window:
        lines.append(f"  training    {window.get('start')} .. {window.get('end')}")
    parity = meta.get("parity") or {}
    if parity:
        state = "passed" if parity.get("passed") else "FAILED"
        diff = parity.get("max_abs_diff")
        lines.append(f"  parity      {state} on {parity.get('rows', '?')} rows"
                     + (f", max |diff| {diff:.1e}" if isinstance(diff, (int, float)) else ""))
    if meta.get("metrics"):
        lines.append(f"  metrics     {_metric_text(meta['metrics'])}")
    if meta.get("code"):  # the user's modules copied with the version, and their checksums
        lines.append("  custom code " + json.dumps({"code": meta["code"]}, default=str))
    mine = [h for h in history if h.get("version") == mv.version]
    if mine:
        lines.append("  aliases history (this version):")
        for h in mine[-5:]:
            extra = f" by {h['by']}" if h.get("by") else ""
            extra += " (forced)" if h.get("forced") else ""
            lines.append(f"    {str(h['at'])[:19].replace('T', ' ')}  {h['alias']}{extra}")
    lines.append(f"  (scoring models show {mv.name} --version {mv.version} --json: the full metadata)")
    return lines


@models_app.command("register")
@handle_errors
def models_register(
    name: Annotated[str, typer.Option(help="model name")],
    artifact: Annotated[Path, typer.Option(help="joblib file of a fitted estimator/Pipeline")],
    training_data: Annotated[Path | None, typer.Option(help="Parquet file of (a sample of) the training rows")] = None,
    start: Annotated[str | None, typer.Option(help="or: read training rows from the source from this day")] = None,
    end: Annotated[str | None, typer.Option(help="... to this day, inclusive")] = None,
    label: Annotated[str | None, typer.Option(help="label column in the training data (for metrics)")] = None,
    task: Annotated[str | None, typer.Option(help="binary, multiclass or regression (default: inferred)")] = None,
    positive_class: Annotated[str | None, typer.Option(
        help="binary: the class whose probability is the score (required unless classes are 0/1 or False/True)")
    ] = None,
    features: Annotated[str | None, typer.Option(
        help="a,b,c: the inputs in fit order (required for models fitted without column names)")] = None,
    code: Annotated[list[Path] | None, typer.Option(
        help="your own module (.py) or package folder the model needs; repeat for several")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="aliases to point at the new version")] = None,
    config: ConfigOpt = None,
) -> None:
    """Register a model trained elsewhere: its contract, a parity check, and its drift reference."""
    from scoring.dates import parse_day
    from scoring.models.registry import register_model
    from scoring.models.store import ModelStore
    from scoring.models.training import read_window, training_days
    from scoring.quality.suite import write_version_suite

    cfg = load(config)
    window = None
    if training_data is not None:
        frame = _read_training(training_data)
    elif start and end:
        window = (parse_day(start), parse_day(end))
        frame = read_window(cfg, *window)
    else:
        raise ScoringError("give --training-data FILE or --start/--end to read training rows from the source")
    declared = [f.strip() for f in features.split(",") if f.strip()] if features else None
    with step_progress("registering") as step:
        mv = register_model(ModelStore(cfg.model.store), name, artifact, frame, label_column=label,
                            exclude={cfg.source.key_column, cfg.source.timestamp_column}, window=window,
                            aliases=alias or [], task=task, positive_class=positive_class, features=declared,
                            code=code or [], days=training_days(cfg, frame),
                            drift_window=cfg.validation.drift.window_days, on_step=step)
        step("expectation suite")
        suite = write_version_suite(cfg, mv)
    sig, parity = mv.meta["signature"], mv.meta["parity"]
    what = sig["task"] + (f", positive class {sig['positive_class']!r}" if sig["task"] == "binary" else "")
    console.print(f"registered [bold]{mv.name}[/] version {mv.version} ({what}; {len(sig['inputs'])} inputs; "
                  f"parity check passed on {parity['rows']} rows, max |diff| {parity['max_abs_diff']:.1e}; "
                  f"sha256 {mv.meta['sha256'][:12]}); expectation suite {suite}")
    if mv.meta.get("metrics"):
        console.print(f"metrics {json.dumps({k: round(v, 4) for k, v in mv.meta['metrics'].items()})}")


def _read_training(path: Path) -> Any:
    """Training rows from a Parquet or CSV file; one line when it is missing or unreadable."""
    import pandas as pd

    if not path.is_file():
        raise ScoringError(f"training data {str(path)!r} not found")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader error is the file's fault: one line
        raise ScoringError(f"cannot read training data {str(path)!r}: {str(exc).splitlines()[0]}") from None


@models_app.command("promote")
@handle_errors
def models_promote(name: str, version: int, alias: Annotated[str, typer.Option()] = "champion",
                   force: Annotated[bool, typer.Option(help="promote despite failed gate checks")] = False,
                   reason: Annotated[str | None, typer.Option(help="why (required with --force)")] = None,
                   start: Annotated[str | None, typer.Option(help="evaluation window start")] = None,
                   end: Annotated[str | None, typer.Option(help="evaluation window end")] = None,
                   config: ConfigOpt = None) -> None:
    """Point an alias (default champion) at a version; the change is kept in the alias history.

    Promoting to the configured alias (model.alias) passes the promotion gate first (see `scoring models check`)."""
    from scoring.cli.cicd import promote_with_gate

    promote_with_gate(config, name, version, alias, force, reason, start, end)


@models_app.command("suite")
@handle_errors
def models_suite(name: str, version: Annotated[int | None, typer.Option(help="default: champion")] = None,
                 force: Annotated[bool, typer.Option(help="overwrite an existing (maybe edited) suite")] = False,
                 config: ConfigOpt = None) -> None:
    """Write the starting expectation suite of a version (from its training profile) to the suites folder."""
    from scoring.models.store import ModelStore
    from scoring.quality.compile import compile_suite
    from scoring.quality.suite import read_suite, suite_path, write_version_suite

    cfg = load(config)
    mv = ModelStore(cfg.model.store).resolve(name, cfg.model.alias, version)
    existed = suite_path(cfg.validation.suites_dir, mv.name, mv.version).exists()
    path = write_version_suite(cfg, mv, overwrite=force)
    suite = read_suite(path)
    rules = compile_suite(suite, path).rules
    state = "kept the existing" if existed and not force else "wrote the"
    console.print(f"{state} expectation suite {path} ({len(rules)} expectations)", soft_wrap=True)
    table = Table()
    for col in ("expectation", "column", "severity", "why"):
        table.add_column(col, overflow="fold")
    for exp in suite["expectations"]:
        table.add_row(exp["type"].removeprefix("expect_"), str(exp.get("kwargs", {}).get("column") or ""),
                      exp.get("severity", "critical"), str((exp.get("meta") or {}).get("why", "")))
    console.print(table)
