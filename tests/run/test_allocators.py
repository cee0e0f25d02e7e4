"""Allocator settings (scoring.allocators): Arrow's pool and glibc's mmap threshold, each in a fresh process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Raise glibc's dynamic mmap threshold with one 16 MiB block, then allocate 15 blocks of 6 MiB with a 100 KB
# block pinned after each (so the heap's top cannot be trimmed), free the big ones: prints the MiB still resident.
RETAINED = """
import ctypes, sys
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    from scoring.allocators import fix_mmap_threshold
    fix_mmap_threshold()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
p = libc.malloc(16 << 20); ctypes.memset(p, 1, 16 << 20); libc.free(p)
before = rss()
blocks, pins = [], []
for _ in range(15):
    b = libc.malloc(6 << 20); ctypes.memset(b, 1, 6 << 20); blocks.append(b)
    pins.append(libc.malloc(100_000))
for b in blocks:
    libc.free(b)
print(rss() - before)
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("ARROW_DEFAULT_MEMORY_POOL", "MALLOC_MMAP_THRESHOLD_")}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**base, "PYTHONPATH": str(ROOT), **(env or {})}, check=True)
    return proc.stdout.strip()


def test_the_scoring_command_puts_arrow_on_the_system_allocator() -> None:
    code = "import scoring.cli, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    assert _python(code) == "system"
    assert _python("import pyarrow as pa; print(pa.default_memory_pool().backend_name)") != "system"
    # A user's own choice stands.
    assert _python(code, env={"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}) == "jemalloc"


def test_the_dag_file_puts_arrow_on_the_system_allocator() -> None:
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('scoring_dags', sys.argv[1]); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
            "import pyarrow as pa; print(pa.default_memory_pool().backend_name)")
    assert _python(code, str(ROOT / "dags" / "scoring_dags.py")).splitlines()[-1] == "system"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_MMAP_THRESHOLD) is glibc's")
def test_fixed_mmap_threshold_gives_freed_blocks_back() -> None:
    default = float(_python(RETAINED, "default"))
    fixed = float(_python(RETAINED, "fixed"))
    assert default > 45, f"glibc kept only {default:.0f} MiB of 90 freed: the scenario no longer shows retention"
    assert fixed < 10, f"{fixed:.0f} MiB of 90 freed stayed resident with the threshold fixed"
