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
          alias: Annotated[list[str] | None, typer.Option(help="aliases to point at the new version")] = None,
          force: Annotated[bool, typer.Option(help="move the champion alias despite failed gate checks")] = False,
          reason: Annotated[str | None, typer.Option(help="why (required with --force)")] = None,
          ) -> None:
    """Fit the configured features Pipeline on labelled source rows and register it. The configured alias
    (``model.alias``, default champion) moves only through the promotion gate, as ``models promote``."""
    from scoring.dates import parse_day
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    cfg = load(config)
    wanted = alias if alias is not None else [cfg.model.alias]
    with step_progress("training") as step:
        mv = train_model(cfg, parse_day(start) if start else None, parse_day(end) if end else None,
                         aliases=[a for a in wanted if a != cfg.model.alias], on_step=step)
        step("expectation suite")
        suite = write_version_suite(cfg, mv)
    console.print(f"registered [bold]{mv.name}[/] version {mv.version}; holdout metrics: "
                  f"{_metric_text(mv.meta['metrics'])}; expectation suite {suite}", highlight=False)
    _gated_alias(config, mv.name, mv.version, cfg.model.alias in wanted, cfg.model.alias, force, reason)


def _gated_alias(config: ConfigOpt, name: str, version: int, wanted: bool, alias: str, force: bool,
                 reason: str | None) -> None:
    """Move the configured alias to a just-registered version through the promotion gate (exit 1 when
    refused: the version stays registered without it)."""
    if not wanted:
        if force:
            raise ScoringError("--force applies to moving the champion alias; this command does not move it")
        return
    from scoring.cli.cicd import promote_with_gate

    promote_with_gate(config, name, version, alias, force, reason, None, None)


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


@models_app.command("fsck")
@handle_errors
def models_fsck(config: ConfigOpt = None,
                fix: Annotated[bool, typer.Option(help="remove what interrupted registrations left")] = False) -> None:
    """Check the model store for what a crash left (versions without metadata, unfinished builds); exit 1 if
    something is found and not removed."""
    from scoring.models.store import ModelStore

    cfg = load(config)
    findings = ModelStore(cfg.model.store).fsck(fix=fix)
    for line in findings:
        console.print(("removed " if fix else "") + line, highlight=False, soft_wrap=True)
    if not findings:
        console.print(f"model store {cfg.model.store} is consistent")
    elif not fix:
        console.print("run `scoring models fsck --fix` to remove them")
        raise typer.Exit(1)


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


def _compiled_text(entry: dict[str, Any]) -> str:
    """The compiled engine's state in one line (docs/compiled-scoring.md)."""
    status = entry.get("status")
    if status == "proven":
        compiler = entry.get("compiler") or {}
        name = compiler.get("name", "?")
        pre = entry.get("preprocess") or {}
        how = pre.get("engine", "pipeline") + (f" ({pre['reason']})" if pre.get("reason") else "")
        return (f"proven {entry.get('proof', {}).get('equality', '?')} ({name} {compiler.get(name, '?')}); "
                f"preprocessing: {how}")
    if status == "compiling":
        from scoring.models.compiled.background import in_progress

        return in_progress(entry)
    if status == "refused":
        return f"refused: {entry.get('first_difference')}"
    return f"not compiled: {entry.get('reason')}"


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
    if meta.get("compiled"):
        lines.append(f"  compiled    {_compiled_text(meta['compiled'])}")
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
    force: Annotated[bool, typer.Option(help="move the champion alias despite failed gate checks")] = False,
    reason: Annotated[str | None, typer.Option(help="why (required with --force)")] = None,
    day_rows: Annotated[int | None, typer.Option(min=1, help="training rows without a timestamp: rows of a typical "
                                                 "day, the size of the reference chunks (default: the source's "
                                                 "recent days)")] = None,
    accept_metrics: Annotated[bool, typer.Option(
        "--accept-metrics", help="register even when the labelled rows give chance-level metrics")] = False,
    trust: Annotated[bool, typer.Option(
        help="accept imports outside the model-class allow-list (the artifact is code: docs/security.md)")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="also compile its trees and prove them exact "
                                          "(scoring models compile)")] = False,
    config: ConfigOpt = None,
) -> None:
    """Register a model trained elsewhere: its contract, a parity check, and its drift reference. The configured
    alias (``model.alias``) moves only through the promotion gate, as ``models promote``."""
    from scoring.dates import parse_day
    from scoring.models.registry import register_model
    from scoring.models.store import ModelStore
    from scoring.models.training import read_window, training_days, typical_day_rows
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
    days = training_days(cfg, frame)
    chunk_rows, size_from = (None, "") if days is not None else (day_rows, "--day-rows") if day_rows \
        else typical_day_rows(cfg, len(frame))
    with step_progress("registering") as step:
        mv = register_model(ModelStore(cfg.model.store), name, artifact, frame, label_column=label,
                            exclude={cfg.source.key_column, cfg.source.timestamp_column}, window=window,
                            aliases=[a for a in alias or [] if a != cfg.model.alias], task=task,
                            positive_class=positive_class, features=declared, code=code or [], days=days,
                            drift_window=cfg.validation.drift.window_days, chunk_rows=chunk_rows,
                            threshold=cfg.model.threshold, accept_metrics=accept_metrics, trust=trust,
                            on_step=step, promoted_alias=cfg.model.alias)
        step("expectation suite")
        suite = write_version_suite(cfg, mv)
    if compile:
        _compile(cfg, mv, frame, background=cfg.scoring.compile_background)
    sig, parity = mv.meta["signature"], mv.meta["parity"]
    what = sig["task"] + (f", positive class {sig['positive_class']!r}" if sig["task"] == "binary" else "")
    console.print(f"registered [bold]{mv.name}[/] version {mv.version} ({what}; {len(sig['inputs'])} inputs; "
                  f"parity check passed on {parity['rows']} rows, max |diff| {parity['max_abs_diff']:.1e}; "
                  f"sha256 {mv.meta['sha256'][:12]}); expectation suite {suite}")
    if mv.meta.get("metrics"):
        console.print(f"metrics {json.dumps({k: round(v, 4) for k, v in mv.meta['metrics'].items()})}")
    basis = mv.meta["reference"]["basis"] + (f" (typical day: {size_from})" if size_from else "")
    console.print(f"drift and performance reference: {basis}", soft_wrap=True)
    calibration = (mv.meta.get("performance") or {}).get("calibration")
    if calibration:
        state = ("not calibrated: performance estimation (CBPE) calibrates the scores on the training rows"
                 if calibration["calibrated_on_reference"] else "calibrated: CBPE uses the scores as they are")
        console.print(f"score calibration: expected calibration error {calibration['ece']:.3f} "
                      f"(tolerance {calibration['tolerance']}); {state}", soft_wrap=True)
    _gated_alias(config, mv.name, mv.version, cfg.model.alias in (alias or []), cfg.model.alias, force, reason)


@models_app.command("compile")
@handle_errors
def models_compile(
    name: str, version: int,
    training_data: Annotated[Path | None, typer.Option(help="Parquet/CSV of (a sample of) the training rows")] = None,
    start: Annotated[str | None, typer.Option(help="or: read rows from the source from this day")] = None,
    end: Annotated[str | None, typer.Option(help="... to this day, inclusive")] = None,
    background: Annotated[bool, typer.Option(
        "--background", help="return at once; the compile runs in a process of its own")] = False,
    config: ConfigOpt = None,
) -> None:
    """Compile a version's trees and prove them exact against its own predict (docs/compiled-scoring.md).

    The proof's rows: the training rows (default: the version's training window read from the source), every
    category level, every split threshold and one ulp either side. A refused compile names the first
    differing row; runs then keep the model's own predict."""
    from scoring.dates import parse_day
    from scoring.models.store import ModelStore
    from scoring.models.training import read_window

    cfg = load(config)
    mv = ModelStore(cfg.model.store).get(name, version)
    if training_data is not None:
        frame = _read_training(training_data)
    elif start and end:
        frame = read_window(cfg, parse_day(start), parse_day(end))
    elif (window := mv.meta.get("training_window")) is not None:
        frame = read_window(cfg, parse_day(window["start"]), parse_day(window["end"]))
    else:
        raise ScoringError(f"{name} v{version} has no training window: give --training-data FILE or --start/--end")
    if frame.empty:
        raise ScoringError("no training rows to prove the compiled predictor on: give --training-data or a window")
    _compile(cfg, mv, frame, background=background)


def _compile(cfg: Any, mv: Any, frame: Any, background: bool = False) -> None:
    from scoring.models.compiled.background import compile_within, start_background

    budget = cfg.scoring.compile_budget_s
    if background:
        pid = start_background(Path(cfg.model.store), mv, frame, budget)
        console.print(f"compiling {mv.name} v{mv.version} in the background (pid {pid}, budget {budget:g} s); "
                      "runs score natively until it is proven (scoring models show)", soft_wrap=True)
        return
    with console.status(f"compiling {mv.name} v{mv.version} and proving it exact (budget {budget:g} s)"):
        entry = compile_within(Path(cfg.model.store), mv, frame, budget)
    if entry["status"] == "proven":
        rows = sum(entry["proof"]["rows"].values())
        equality = entry["proof"]["equality"]
        how = "bit-identical" if equality.startswith("bitwise") else equality
        console.print(f"compiled {mv.name} v{mv.version} in {entry['compile_s']}s; proven {how} on {rows} rows; "
                      "scoring.engine auto uses it", soft_wrap=True)
    elif entry["status"] == "refused":
        console.print(f"[yellow]compiled predictor refused[/] ({entry['first_difference']}); runs keep the "
                      "model's own predict")
    else:
        console.print(f"not compiled: {entry['reason']}; runs keep the model's own predict")


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
