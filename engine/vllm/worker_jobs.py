"""What vLLM's worker does with a job file of the serving process (engine/vllm/worker_blend.py writes
them; engine/vllm/worker_ext.py calls these on its blender, over vLLM's weights).

Kept apart from the extension class so the job protocol runs, and is tested, on any blender.

The files carry every found chunk cache of a prompt (about 170 MB for six passages of the
embedded model in fp32), so their cost sits inside the request's TTFT. They live in the handoff
directory (a tmpfs where there is one) for the length of one call, so they are written without the
zip records' CRC-32 (two thirds of the write's time) and jobs are read memory-mapped: the blend reads
the pages in place instead of copying them first. Unlinking a file while its tensors are still mapped is
safe; the pages go when the last tensor does.
"""

from __future__ import annotations

import threading
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


# torch's CRC switch is process-wide: turned off only around our own writes, one at a time.
_crc_lock = threading.Lock()


def save_file(obj: Any, path: str | Path) -> None:
    """A job or result file, written without CRC-32 (see the module's docstring)."""
    with _crc_lock:
        before = torch.serialization.get_crc32_options()
        torch.serialization.set_crc32_options(False)
        try:
            torch.save(obj, path)
        finally:
            torch.serialization.set_crc32_options(before)


def load_file(path: str | Path, *, mmap: bool = False) -> Any:
    """A job or result file, read with the restricted unpickler and JOB_TYPES only. `mmap`: for
    tensors used during the call only (a job's); tensors that outlive the file (caches going into
    the store) are read into memory, or they would keep its tmpfs pages alive and fault them in
    on their first read."""
    with torch.serialization.safe_globals(JOB_TYPES):
        return torch.load(path, weights_only=True, mmap=mmap)


def read_job(path: str, directory: str) -> dict[str, Any]:
    """A job file, from `directory` (our connector's handoff directory) only."""
    where = Path(path).resolve()
    if where.parent != Path(directory).resolve():
        raise ValueError(f"job file {path} is outside {directory}")
    job: dict[str, Any] = load_file(where, mmap=True)
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
    save_file({"prefix": fresh, "chunks": chunks}, out)
    return str(out)
