"""Choosing the compute dtype: bf16 is several times faster on CPUs with AMX, fp32 is faster without."""

from __future__ import annotations

import json
import os
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


def resolve_dtype(requested: str, device: torch.device | None = None) -> str:
    """`requested`, or for "auto": bfloat16 on a GPU (its tensor cores run bf16), else the CPU probe."""
    if requested != "auto":
        return requested
    if device is not None and device.type == "cuda":
        return "bfloat16"
    return fastest_dtype()


def _machine_signature() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
    return f"{model}|{torch.__version__}|cuda={torch.cuda.is_available()}"


def remembered_dtype(requested: str, path: Path, device: torch.device | None = None) -> str:
    """`requested`, or for "auto" the choice stored in `path` for this CPU and torch build, probing
    and storing it the first time. The dtype is part of every chunk-cache key: a choice that
    flipped between restarts (a timing probe on a busy machine can) would orphan the disk and Redis
    tiers, so it is made once per machine and data directory. On a GPU "auto" is bfloat16, no probe."""
    if requested != "auto":
        return requested
    if device is not None and device.type == "cuda":
        return "bfloat16"
    signature = _machine_signature()
    try:
        stored = json.loads(path.read_text())
        if stored.get("signature") == signature and stored.get("dtype") in ("float32", "bfloat16"):
            return str(stored["dtype"])
    except (OSError, ValueError, AttributeError):
        pass  # absent or unreadable: probe again
    choice = fastest_dtype()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"signature": signature, "dtype": choice}))
        tmp.replace(path)
    except OSError:
        pass  # a read-only data dir: the choice holds for this process only
    return choice
