from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dags_import_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags")}
    code = ("from airflow.models.dagbag import DagBag; b = DagBag(dag_folder={!r}); "
            "print(sorted(b.dag_ids)); assert b.import_errors == {{}}, b.import_errors").format(str(ROOT / "dags"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scoring_daily" in out.stdout
