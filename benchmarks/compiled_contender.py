"""The compiled-engine contender shared by ``bench_core.py`` and ``bench_compiled.py`` (issue 26).

- ``compiled_limit(LIMIT)``: a bare chunked-predict program (``bench_core.LIMIT``) turned into the same program
  scoring with the predictor ``predictor_for(..., "compiled")`` returns (its load re-check included); it fails
  when the version falls back to the native predict;
- ``compile_champion``: compiles a registered version with ``compile_version`` (TL2cgen + the proof) and stops
  the benchmark unless it is proven.
"""

from __future__ import annotations

import time
from typing import Any

_LOAD = "model = joblib.load(model_file)"


def compiled_limit(limit: str) -> str:
    """The source of ``limit`` (argv as ``bench_core.LIMIT``) with the model loaded as its compiled predictor.

    Raises ValueError when ``limit`` does not load the model with ``joblib.load(model_file)``."""
    if _LOAD not in limit:
        raise ValueError("the limit program does not load the model with joblib.load(model_file)")
    return limit.replace(
        _LOAD,
        "from pathlib import Path\n"
        "from scoring.models.store import ModelStore\n"
        "from scoring.models.compiled import predictor_for\n"
        "_p = Path(model_file).resolve(); _s = ModelStore(_p.parents[2])\n"
        "model, _d = predictor_for(_s, _s.get(_p.parents[1].name, int(_p.parent.name)), 'compiled')\n"
        "assert _d['engine'] == 'compiled', _d")


def compile_champion(store: Any, mv: Any, frame: Any) -> dict[str, Any]:
    """Compile ``mv`` of ``store`` proven on ``frame`` (the training day's inputs); prints the compile time.

    Returns the recorded entry; raises SystemExit when the compiled engine is not proven."""
    from scoring.models.compiled import compile_version

    clock = time.monotonic()
    entry = compile_version(store, mv, frame)
    if entry["status"] != "proven":
        raise SystemExit(f"compile not proven: {entry}")
    print(f"compile + proof: {time.monotonic() - clock:.1f} s (compile {entry['compile_s']} s; proof rows "
          f"{entry['proof']['rows']})", flush=True)
    return entry
