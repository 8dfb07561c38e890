"""Helpers shared by the benchmarks: prose from the evaluation data, timing, result files."""

from __future__ import annotations

import json
import platform
import statistics
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


def write_results(name: str, payload: dict[str, Any], table: str, results_dir: Path = RESULTS) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (results_dir / f"{name}.md").write_text(table)
