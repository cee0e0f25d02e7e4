"""Compiled scoring benchmark (issue 26): the compiled engine beside the model's own predict, every score checked.

Builds one DuckDB source (a ``--train-rows`` training day and a ``--rows`` day), trains and registers the
sample HistGradientBoosting Pipeline, compiles it (``compile_version``: TL2cgen + the proof) and runs each
contender as its own process under ``/usr/bin/time`` (wall s, CPU s, peak RSS), ``--repeat`` rounds
interleaved; prints medians and ratios:

- limit native: reads the day's key and inputs from DuckDB into pandas, one unpickle, the model's own
  ``predict_proba`` in slices of the run's chunk size (publishes nothing: the floor of bench_core.py);
- limit compiled: the same, with the predictor ``predictor_for(..., "compiled")`` returns (load re-check
  included);
- peer: whole day into pandas, one predict, bulk insert into DuckDB (bench_core.py's peer);
- ``scoring run`` with ``scoring.engine: native`` and with ``scoring.engine: compiled``.

Afterwards every score published by both runs and written by the compiled limit is compared with the native
limit's scores, bit for bit, and the ledger's engine and counts are checked.

First, in the benchmark's own process, the model's own ``predict_proba`` against the compiled one on the
day's frame, and the trees alone (``_raw_predict`` against the compiled sums), CPU and wall medians.

    .venv/bin/python benchmarks/bench_compiled.py [--rows 200000] [--train-rows 50000] [--repeat 3] [--bare-only]
    .venv/bin/python benchmarks/bench_compiled.py --lightgbm 100 [--rows ...]   # LightGBM against lleaves only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_core import LIMIT, PEER, SCORING, last_run, timed  # noqa: E402
from compiled_contender import compile_champion, compiled_limit  # noqa: E402
from contenders import BIG_DAY, TRAIN_DAY  # noqa: E402

LIMIT_COMPILED = compiled_limit(LIMIT)


def build(folder: Path, rows: int, train_rows: int) -> dict:
    """The source, the model (registered and compiled) and the two configurations."""
    import duckdb

    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.models.store import ModelStore
    from scoring.models.training import read_window, train_model
    from scoring.quality.suite import write_version_suite

    db = folder / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        for i, (day, n) in enumerate(((TRAIN_DAY, train_rows), (BIG_DAY, rows))):
            con.register("batch", generate_day(day, n, seed=11))
            con.execute(("CREATE TABLE loan_applications AS " if i == 0 else "INSERT INTO loan_applications ")
                        + "SELECT * FROM batch")
            con.unregister("batch")
    text = (ROOT / "scoring.yaml").read_text().replace("store: models", f"store: {folder / 'models'}")
    configs = {}
    for engine in ("native", "compiled"):
        cfg_text = (text.replace("path: sample_data/sample.duckdb", f"path: {db}")
                    .replace("path: results/results.duckdb", f"path: {folder / engine}-results.duckdb")
                    .replace("staging_dir: results/staging", f"staging_dir: {folder / engine}-staging"))
        configs[engine] = folder / f"{engine}.yaml"
        configs[engine].write_text(cfg_text + f"scoring:\n  engine: {engine}\n")
    cfg = load_config(configs["native"])
    mv = train_model(cfg, TRAIN_DAY, TRAIN_DAY)
    write_version_suite(cfg, mv)
    store = ModelStore(cfg.model.store)
    compile_champion(store, mv, read_window(cfg, TRAIN_DAY, TRAIN_DAY))
    mv = store.resolve(cfg.model.name, "champion")
    return {"configs": configs, "db": str(db), "model": str(mv.artifact),
            "features": ",".join(f["name"] for f in mv.features), "table": cfg.source.table,
            "key": cfg.source.key_column, "ts": cfg.source.timestamp_column, "folder": folder}


def bare(b: dict, repeat: int) -> None:
    """In this process: the model's own predict_proba and the compiled one on the day's frame (read once), and
    the trees alone (the Pipeline's transform done once); CPU and wall medians, every score compared."""
    import duckdb
    import numpy as np

    from scoring.models.compiled import predictor_for
    from scoring.models.compiled.predictor import split_model
    from scoring.models.store import ModelStore

    path = Path(b["model"]).resolve()
    store = ModelStore(path.parents[2])
    mv = store.get(path.parents[1].name, int(path.parent.name))
    native = store.load(mv)
    compiled, details = predictor_for(store, mv, "compiled")
    assert details["engine"] == "compiled", details
    with duckdb.connect(b["db"], read_only=True) as con:
        frame = con.execute(f'SELECT * FROM "{b["table"]}" WHERE CAST("{b["ts"]}" AS DATE) = $1',
                            [BIG_DAY]).df()
    x = frame[b["features"].split(",")]
    pre, estimator = split_model(native)
    xt = compiled.tree_inputs(x)
    work = {"predict_proba native": lambda: native.predict_proba(x),
            "predict_proba compiled": lambda: compiled.predict_proba(x),
            "trees native (_raw_predict)": lambda: estimator._raw_predict(xt),
            "trees compiled": lambda: compiled.raw(xt)}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in work}
    outputs = {}
    for _ in range(repeat):
        for name, fn in work.items():
            cpu, wall = time.process_time(), time.perf_counter()
            outputs[name] = fn()
            times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    print(f"\nin-process, {len(x):,} rows, {details['threads']} threads, preprocessing "
          f"{details.get('preprocess')}, medians of {repeat} interleaved rounds")
    print(f"{'contender':30} {'CPU s':>8} {'wall s':>8} {'CPU ratio':>10}")
    for name in work:
        cpu = statistics.median(t[0] for t in times[name])
        wall = statistics.median(t[1] for t in times[name])
        ref = statistics.median(t[0] for t in times[name.replace("compiled", "native").replace(
            "trees native", "trees native (_raw_predict)") if "compiled" in name else name])
        print(f"{name:30} {cpu:8.2f} {wall:8.2f} {cpu / ref:10.2f}")
    for a, c in (("predict_proba native", "predict_proba compiled"), ("trees native (_raw_predict)", "trees compiled")):
        same = np.array_equal(np.ascontiguousarray(outputs[a]).view(np.uint64),
                              np.ascontiguousarray(outputs[c]).view(np.uint64))
        print(f"check {c}: bit-identical to {a}: {same}")
        assert same


def lightgbm_bare(rows: int, train_rows: int, repeat: int, trees: int) -> None:
    """LightGBM in the sample Pipeline (``trees`` trees, 31 leaves): its own ``predict_proba`` against lleaves
    (``predictor_for``), in this process, CPU and wall medians, the largest difference and the class flips."""
    import joblib
    import numpy as np
    from lightgbm import LGBMClassifier

    from features import build_model
    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.models.compiled import compile_version, predictor_for
    from scoring.models.registry import register_model
    from scoring.models.store import ModelStore

    cfg = load_config(ROOT / "scoring.yaml")
    tcfg = cfg.training
    ranges = {c: (r.get("min"), r.get("max")) for c, r in tcfg.numeric.items()}
    features = [*ranges, *tcfg.categorical]
    train = generate_day(TRAIN_DAY, train_rows, seed=11).to_pandas()
    day = generate_day(BIG_DAY, rows, seed=11).to_pandas()
    model = build_model(ranges, tcfg.categorical, LGBMClassifier(n_estimators=trees, n_jobs=1, random_state=0,
                                                                 verbose=-1))
    model.fit(train[features], train[tcfg.label_column].astype(int))
    with tempfile.TemporaryDirectory(prefix="bench-lgbm-") as tmp:
        joblib.dump(model, Path(tmp) / "m.joblib")
        store = ModelStore(Path(tmp) / "models")
        mv = register_model(store, "lgbm", Path(tmp) / "m.joblib", train, label_column=tcfg.label_column,
                            exclude={cfg.source.key_column, cfg.source.timestamp_column})
        clock = time.monotonic()
        entry = compile_version(store, mv, train)
        print(f"\nLightGBM ({trees} trees): compile + proof {time.monotonic() - clock:.1f} s "
              f"(compile {entry.get('compile_s')} s), status {entry['status']}")
        if entry["status"] != "proven":
            raise SystemExit(f"lleaves not proven: {entry}")
        compiled, details = predictor_for(store, store.get("lgbm", 1), "compiled")
        assert details["engine"] == "compiled", details
        x = day[features]
        work = {"LightGBM predict_proba": lambda: model.predict_proba(x),
                "lleaves predict_proba": lambda: compiled.predict_proba(x)}
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in work}
        out = {}
        for _ in range(repeat):
            for name, fn in work.items():
                cpu, wall = time.process_time(), time.perf_counter()
                out[name] = fn()
                times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    a, b = out["LightGBM predict_proba"], out["lleaves predict_proba"]
    ref = statistics.median(t[0] for t in times["LightGBM predict_proba"])
    print(f"in-process, {len(x):,} rows, {details['threads']} threads, preprocessing {details.get('preprocess')}, "
          f"medians of {repeat}")
    for name in work:
        cpu = statistics.median(t[0] for t in times[name])
        wall = statistics.median(t[1] for t in times[name])
        print(f"{name:30} CPU {cpu:8.2f} s  wall {wall:8.2f} s  CPU ratio {cpu / ref:6.2f}")
    flips = int((np.argmax(a, axis=1) != np.argmax(b, axis=1)).sum())
    print(f"check lleaves: max |diff| {np.max(np.abs(a - b)):.2e}, class flips {flips}")
    assert np.max(np.abs(a - b)) <= 1e-12 and flips == 0


def load() -> str:
    """The machine's load averages (1, 5, 15 min) and cores: the benchmark shares the machine."""
    import os

    return f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores"


def published_scores(results_db: Path) -> dict[str, float]:
    import duckdb

    with duckdb.connect(str(results_db), read_only=True) as con:
        return dict(con.execute("SELECT source_key, score FROM predictions").fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the scored day")
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bare-only", action="store_true", help="only the in-process predict comparison")
    parser.add_argument("--lightgbm", type=int, default=0, metavar="TREES",
                        help="only LightGBM (TREES trees) against lleaves, in-process")
    args = parser.parse_args()
    print(f"load before: {load()}")
    if args.lightgbm:
        lightgbm_bare(args.rows, args.train_rows, args.repeat, args.lightgbm)
        print(f"load after: {load()}")
        return
    import numpy as np
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="bench-compiled-") as tmp:
        folder = Path(tmp)
        b = build(folder, args.rows, args.train_rows)
        bare(b, args.repeat)
        if args.bare_only:
            return
        day = BIG_DAY.isoformat()
        run = {e: [SCORING, "run", "--config", str(b["configs"][e]), "--date", day, "--show", "0"]
               for e in ("native", "compiled")}
        timed(run["native"])  # warm-up, and the run's chunk size for the limits
        chunk = str(last_run(folder / "native-results.duckdb")["details"]["rows_per_chunk"])
        common = [b["db"], b["table"], b["key"], b["ts"], day, b["model"], b["features"], chunk]
        contenders = {
            "limit native": [sys.executable, "-c", LIMIT, *common, str(folder / "limit-native.parquet")],
            "limit compiled": [sys.executable, "-c", LIMIT_COMPILED, *common, str(folder / "limit-compiled.parquet")],
            "peer": [sys.executable, "-c", PEER, *common[:-1], str(folder / "peer.duckdb")],
            "scoring run native": run["native"],
            "scoring run compiled": run["compiled"],
        }
        figures: dict[str, list[dict]] = {k: [] for k in contenders}
        for _ in range(args.repeat):
            for name, cmd in contenders.items():
                figures[name].append(timed(cmd))
        base = pd.read_parquet(folder / "limit-native.parquet").set_index("source_key")["score"]
        checks = {"limit compiled": pd.read_parquet(folder / "limit-compiled.parquet").set_index("source_key")["score"]}
        expected_rows = {"limit compiled": len(base)}
        for engine in ("native", "compiled"):
            ledger = last_run(folder / f"{engine}-results.duckdb")
            assert ledger["status"] == "success" and ledger["rows_in"] == ledger["scored"] + ledger["quarantined"]
            assert ledger["details"]["engine"]["engine"] == engine, ledger["details"]["engine"]
            checks[f"scoring run {engine}"] = pd.Series(published_scores(folder / f"{engine}-results.duckdb"))
            expected_rows[f"scoring run {engine}"] = ledger["scored"]  # the gate quarantines the sample's sentinels
        print(f"\n{args.rows:,} rows, chunk {chunk} rows, medians of {args.repeat} interleaved rounds "
              f"(wall s are noisy on a shared machine; CPU s is the cost)")
        limit = statistics.median(f["cpu_s"] for f in figures["limit native"])
        limit_wall = statistics.median(f["wall_s"] for f in figures["limit native"])
        peer = statistics.median(f["wall_s"] for f in figures["peer"])
        print(f"{'contender':24} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8} {'CPU/limit':>10} {'wall/limit':>10} "
              f"{'peer/wall':>10}")
        for name, runs in figures.items():
            wall = statistics.median(f["wall_s"] for f in runs)
            cpu = statistics.median(f["cpu_s"] for f in runs)
            rss = statistics.median(f["rss_mib"] for f in runs)
            print(f"{name:24} {wall:8.2f} {cpu:8.2f} {rss:8.0f} {cpu / limit:10.2f} {wall / limit_wall:10.2f} "
                  f"{peer / wall:10.2f}")
        for name, scores in checks.items():
            common_keys = base.index.intersection(scores.index)
            assert len(common_keys) == len(scores) == expected_rows[name], (name, len(base), len(scores))
            a = base.loc[common_keys].to_numpy(np.float64)
            c = scores.loc[common_keys].to_numpy(np.float64)
            same = int((a.view(np.uint64) == c.view(np.uint64)).sum())
            print(f"check {name}: {same:,} of {len(a):,} scores bit-identical to the model's own predict_proba")
            assert same == len(a)
        print(json.dumps({k: [round(f["wall_s"], 2) for f in v] for k, v in figures.items()}))
        print(json.dumps({k: [round(f["cpu_s"], 2) for f in v] for k, v in figures.items()}))
        print(f"load after: {load()}")


if __name__ == "__main__":
    main()
