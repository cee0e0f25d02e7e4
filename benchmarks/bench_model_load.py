"""Loading a model version from a worker's cache (an object-store model store, ``ObjectModelStore.load``):
the artifact hashed twice (the cache's check, then ``ModelStore.load``'s) vs once (``ModelStore.load``'s own
check before unpickling), side by side. Every chunk task of a DAG run loads the model like this, so this is
part of a chunk task's preparation.

    .venv/bin/python benchmarks/bench_model_load.py [--rows 100000] [--trees 12] [--repeat 5]

The model is a real, fully grown ExtraTreesClassifier trained here on generated rows (its artifact is a few
hundred MB, like a large tree ensemble), registered into an ``ObjectModelStore`` whose root is a local folder
through pyarrow's LocalFileSystem (the same code as on S3, without a server), and loaded once to fill the cache.
Then ``--repeat`` interleaved rounds of both loads from the warm cache. Prints the artifact size, the medians,
the ratio, sha256 of the artifact alone, and checks both loads predict the same.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from sklearn.ensemble import ExtraTreesClassifier

    from scoring.models.cache import cached_version
    from scoring.models.registry import register_model
    from scoring.models.remote_store import ObjectModelStore
    from scoring.models.store import ModelStore
    from scoring.storage.checksums import sha256_file
    from scoring.storage.stagefs import StagePath

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(args.rows, 8)), columns=[f"x{i}" for i in range(8)])
    frame["y"] = (frame["x0"] + rng.normal(scale=2.0, size=args.rows) > 0).astype(int)
    model = ExtraTreesClassifier(n_estimators=args.trees, random_state=0, n_jobs=1).fit(frame.iloc[:, :8],
                                                                                        frame["y"])
    with tempfile.TemporaryDirectory(prefix="bench_model_load_") as tmp:
        folder = Path(tmp)
        os.environ["SCORING_MODEL_CACHE"] = str(folder / "cache")
        artifact = folder / "model.joblib"
        joblib.dump(model, artifact)
        store = ObjectModelStore(StagePath.local(folder / "store"))
        mv = register_model(store, "big", artifact, frame.head(2_000), label_column="y", aliases=["champion"],
                            parity_rows=200)
        mv = store.get("big", mv.version)
        sample = frame.iloc[:1_000, :8]
        want = model.predict_proba(sample)
        store.load(mv)  # fills the cache
        entry = cached_version(mv, store.root.fs)
        size_mb = entry.artifact.stat().st_size / 1e6

        def twice() -> object:  # the code before: the cache's check, then ModelStore.load's
            return ModelStore.load(store, cached_version(mv, store.root.fs))

        def once() -> object:
            return store.load(mv)

        timings: dict[str, list[float]] = {"hashed twice (before)": [], "hashed once (after)": [],
                                           "sha256 of the artifact": []}
        same = True
        for _ in range(args.repeat):
            for label, load in (("hashed twice (before)", twice), ("hashed once (after)", once)):
                started = time.perf_counter()
                loaded = load()
                timings[label].append(time.perf_counter() - started)
                same = same and np.array_equal(loaded.predict_proba(sample), want)
                del loaded
            started = time.perf_counter()
            sha256_file(entry.artifact)
            timings["sha256 of the artifact"].append(time.perf_counter() - started)
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"artifact {size_mb:,.0f} MB ({args.trees} fully grown trees, {args.rows:,} rows); medians of "
          f"{args.repeat} interleaved rounds; load average {os.getloadavg()[0]:.2f}")
    for label, value in med.items():
        print(f"  {label:26}{value:>8.3f} s")
    before, after = med["hashed twice (before)"], med["hashed once (after)"]
    print(f"  before / after            {before / after:>8.2f}x  (saved {before - after:.3f} s per load)")
    print(f"  same predictions: {same}")


if __name__ == "__main__":
    main()
