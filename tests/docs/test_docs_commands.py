"""The docs cannot go stale: every shell block marked runnable in README.md and docs/*.md is run against a
demo made the way ``make demo`` makes it (seeded sample data ending yesterday UTC, the sample model trained on
its first days), and must exit 0.

A block is runnable when the line before its opening fence is ``<!-- runnable -->`` (invisible on the site).
The runnable blocks of one page run in order, in one ``bash -euo pipefail`` script, in a private copy of the
demo folder with this environment's ``scoring`` on PATH; commands a reader copies work there unchanged.
Also checks that ``mkdocs build --strict`` passes (a broken link or a page missing from the nav fails it).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = 30  # the demo's shape (make demo: 60 days, the last 20 with levels unseen in training), smaller
ROWS_PER_DAY = 300
MARK = "<!-- runnable -->"
FENCE = re.compile(r"^```(?:bash|sh|shell)\s*$")


def runnable_blocks(text: str) -> list[str]:
    """The bodies of the fenced shell blocks whose opening fence follows a ``<!-- runnable -->`` line."""
    lines = text.splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARK and i + 1 < len(lines) and FENCE.match(lines[i + 1].strip()):
            body: list[str] = []
            i += 2
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append("\n".join(body))
        i += 1
    return blocks


PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
RUNNABLE = {p: b for p in PAGES if (b := runnable_blocks(p.read_text()))}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCORING_", "AIRFLOW"))}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "GX_ANALYTICS_ENABLED": "false",
                "COLUMNS": "80", "NO_COLOR": "1"})
    return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the repository after ``make demo`` (config, sample data, trained model)."""
    folder = tmp_path_factory.mktemp("demo")
    shutil.copy(ROOT / "scoring.yaml", folder / "scoring.yaml")
    (folder / "sample_data").mkdir()
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    first = yesterday - dt.timedelta(days=DAYS - 1)
    steps = [["sample-data", "--days", str(DAYS), "--rows-per-day", str(ROWS_PER_DAY)],
             ["train", "--start", first.isoformat(), "--end", (yesterday - dt.timedelta(days=20)).isoformat()],
             ["run"]]  # make demo ends by scoring yesterday
    for args in steps:
        out = subprocess.run([str(BIN / "scoring"), *args], cwd=folder, env=_env(), capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, f"scoring {' '.join(args)}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
    return folder


def test_the_docs_have_runnable_commands() -> None:
    assert ROOT / "docs" / "getting-started.md" in RUNNABLE
    assert sum(len(b) for b in RUNNABLE.values()) >= 5


@pytest.mark.parametrize("page", list(RUNNABLE), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_runnable_blocks_run_against_the_demo(page: Path, demo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(demo, folder)
    script = "\n".join(RUNNABLE[page])
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, f"{page.name}:\n{script}\n--- output\n{out.stdout[-4000:]}{out.stderr[-4000:]}"


def test_the_site_builds_strict(tmp_path: Path) -> None:
    out = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_every_test_file_the_docs_name_exists() -> None:
    named = {m for page in PAGES for m in re.findall(r"tests/[\w/]+\.py", page.read_text())}
    assert named and not sorted(p for p in named if not (ROOT / p).is_file())
