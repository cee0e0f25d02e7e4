"""Shared pieces of the single-day benchmarks that run Python contenders in fresh interpreters
(``bench_postgres.py``, ``bench_validation_engines.py``): the seeded source and model, and a runner that reports
each contender's own peak RSS. (``bench_core.py`` times whole commands under /usr/bin/time instead.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BIG_DAY = dt.date(2026, 6, 2)
SMALL_DAY = dt.date(2026, 6, 3)
TRAIN_DAY = dt.date(2026, 6, 1)

# The model's predict_proba on the whole day's frame, in memory (the read is not timed); prints {"seconds": ...}.
BARE = """
import json, sys, time, duckdb
from scoring.config import load_config
from scoring.models.store import ModelStore
cfg = load_config(sys.argv[1]); day = sys.argv[2]
ms = ModelStore(cfg.model.store); mv = ms.resolve(cfg.model.name, "champion"); model = ms.load(mv)
cols = [f["name"] for f in mv.features]
with duckdb.connect(str(cfg.source.path), read_only=True) as con:
    frame = con.sql("SELECT * FROM loan_applications WHERE CAST(applied_at AS DATE) = $1", params=[day]).to_df()
x = frame[cols]
t = time.perf_counter(); p = model.predict_proba(x)[:, 1]; s = time.perf_counter() - t
print(json.dumps({"seconds": s, "rows": len(p)}))
"""

# The contender's own peak RSS: VmHWM of its address space. (wait4's ru_maxrss would not do: Linux carries
# the parent's high-water mark across fork + exec, so every child would report at least the parent's peak.)
HWM = """
for _line in open("/proc/self/status"):
    if _line.startswith("VmHWM:"):
        print(json.dumps({"vmhwm_mib": int(_line.split()[1]) / 1024}))
"""


def run_contender(code: str, *args: str) -> dict:
    """Run one contender in a fresh interpreter; return its figures plus its own peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code + HWM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    _, status, _usage = os.wait4(proc.pid, 0)
    out, errs = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        raise SystemExit(f"contender failed:\n{errs[-3000:]}")
    lines = out.strip().splitlines()
    figures = json.loads(lines[-2])
    figures["peak_rss_mib"] = json.loads(lines[-1])["vmhwm_mib"]
    return figures


def build(folder: Path, rows: int, small_rows: int) -> Path:
    import duckdb

    from sample_data.generate import generate_day
    from scoring.config import load_config
    from scoring.models.training import train_model
    from scoring.quality.suite import write_version_suite

    db = folder / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        for day, n in ((TRAIN_DAY, 200_000), (BIG_DAY, rows), (SMALL_DAY, small_rows)):
            batch = generate_day(day, n, seed=11)
            con.register("batch", batch)
            if day == TRAIN_DAY:
                con.execute("CREATE TABLE loan_applications AS SELECT * FROM batch")
            else:
                con.execute("INSERT INTO loan_applications SELECT * FROM batch")
            con.unregister("batch")
    cfg_text = (ROOT / "scoring.yaml").read_text()
    cfg_text = cfg_text.replace("path: sample_data/sample.duckdb", f"path: {db}")
    cfg_text = cfg_text.replace("store: models", f"store: {folder / 'models'}")
    cfg_text = cfg_text.replace("path: results/results.duckdb", f"path: {folder / 'results.duckdb'}")
    cfg_text = cfg_text.replace("staging_dir: results/staging", f"staging_dir: {folder / 'staging'}")
    cfg_path = folder / "scoring.yaml"
    cfg_path.write_text(cfg_text)
    cfg = load_config(cfg_path)
    mv = train_model(cfg, TRAIN_DAY, TRAIN_DAY)
    write_version_suite(cfg, mv)
    return cfg_path
