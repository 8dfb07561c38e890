"""Choosing the compute dtype: bf16 is several times faster on CPUs with AMX, fp32 is faster without."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F


def cpu_has_amx() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return False
    flags = next((ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")), "")
    return "amx_bf16" in flags.split()


def _best_matmul_seconds(rounds: int = 5) -> dict[torch.dtype, float]:
    """Min over interleaved rounds, so a busy neighbour slows both dtypes alike."""
    x32, w32 = torch.randn(512, 576), torch.randn(3072, 576)
    inputs = {torch.float32: (x32, w32), torch.bfloat16: (x32.bfloat16(), w32.bfloat16())}
    best = dict.fromkeys(inputs, float("inf"))
    for x, w in inputs.values():
        F.linear(x, w)
    for _ in range(rounds):
        for dtype, (x, w) in inputs.items():
            start = time.perf_counter()
            F.linear(x, w)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best


def fastest_dtype() -> str:
    """'bfloat16' on CPUs with AMX or when bf16 matmuls are not clearly slower; else 'float32'."""
    if not torch.cuda.is_available() and cpu_has_amx():
        return "bfloat16"
    best = _best_matmul_seconds()
    return "float32" if best[torch.float32] < 0.8 * best[torch.bfloat16] else "bfloat16"


def resolve_dtype(requested: str) -> str:
    return fastest_dtype() if requested == "auto" else requested
