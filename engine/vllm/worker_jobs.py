"""What vLLM's worker does with a job file of the serving process (engine/vllm/worker_blend.py writes
them; engine/vllm/worker_ext.py calls these on its blender, over vLLM's weights).

Kept apart from the extension class so the job protocol runs, and is tested, on any blender.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.blend.blender import Blender, PieceLookup
from engine.blend.options import BlendOptions
from engine.blend.precompute import ChunkKV
from engine.prompt import Prompt, PromptPiece
from engine.vllm import held

# What job and result files may hold besides tensors and plain values: torch's restricted unpickler
# builds these and nothing else, so a file planted in the directory cannot run code.
JOB_TYPES: list[Any] = [
    BlendOptions,
    PieceLookup,
    PromptPiece,
    Prompt,
    ChunkKV,
]


def load_file(path: str | Path) -> Any:
    """A job or result file, read with the restricted unpickler and JOB_TYPES only."""
    with torch.serialization.safe_globals(JOB_TYPES):
        return torch.load(path, weights_only=True)


def read_job(path: str, directory: str) -> dict[str, Any]:
    """A job file, from `directory` (our connector's handoff directory) only."""
    where = Path(path).resolve()
    if where.parent != Path(directory).resolve():
        raise ValueError(f"job file {path} is outside {directory}")
    job: dict[str, Any] = load_file(where)
    return job


def blend_job(blender: Blender, job: dict[str, Any]) -> dict[str, float]:
    """Blend the job's prompt over what its lookups found and hold the K/V under the job's name
    (engine/vllm/held.py) for our connector; returns the usage counts and `blend_ms`."""
    prompt = job["prompt"]
    result = blender.prefill_found(prompt, job["lookups"], job["opts"], len(prompt), 0.0)
    held.hold(job["name"], result.kv)
    return {
        "cached_tokens": result.cached_tokens,
        "recomputed_tokens": result.recomputed_tokens,
        "moved_tokens": result.moved_tokens,
        "blend_ms": result.prefill_ms,
    }


def precompute_job(blender: Blender, job: dict[str, Any], out: Path) -> str:
    """Chunk caches of the job (Blender.compute_chunks: the prefix piece's when none was sent, then
    each piece after it), written to file `out`, whose path is returned."""
    fresh, chunks = blender.compute_chunks(job["prefix_ids"], job["prefix"], job["pieces"])
    torch.save({"prefix": fresh, "chunks": chunks}, out)
    return str(out)
