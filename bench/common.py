"""Helpers shared by the benchmarks: prose from the evaluation data, timing, result files."""

from __future__ import annotations

import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import datasets

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def musique_text() -> str:
    """All MuSiQue passages joined: real prose to cut prompts of any length from."""
    examples = datasets.musique()
    return "\n\n".join(c["text"] for ex in examples for c in ex["ctxs"])


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> dict[str, Any]:
    flags = model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        flags = next((ln for ln in lines if ln.startswith("flags")), "")
        model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": model or platform.machine(),
        "threads": torch.get_num_threads(),
        "amx": "amx_bf16" in flags,
        "avx512": "avx512f" in flags,
        "torch": torch.__version__,
    }


def git_commit() -> str:
    """The checkout's commit, marked `+dirty` when tracked files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def command_line() -> str:
    """How this benchmark was started, as a command to rerun it."""
    main = sys.modules.get("__main__")
    module = getattr(getattr(main, "__spec__", None), "name", None)
    head = ["python", "-m", module] if module else ["python", *sys.argv[:1]]
    return shlex.join([*head, *sys.argv[1:]])


def write_results(name: str, payload: dict[str, Any], table: str, results_dir: Path = RESULTS) -> None:
    """Write NAME.json (with the commit and the command that made it) and NAME.md."""
    payload = {"commit": git_commit(), "command": command_line(), **payload}
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (results_dir / f"{name}.md").write_text(table)
