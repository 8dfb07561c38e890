"""What vLLM's worker does with a job file of the serving process (engine/vllm/worker_blend.py writes
them; engine/vllm/worker_ext.py calls these on its blender, over vLLM's weights), and the two sides'
writers and readers of the files (their format: engine/vllm/job_file.py, no pickle).

Kept apart from the extension class so the job protocol runs, and is tested, on any blender.

The files carry every found chunk cache of a prompt (about 170 MB for six passages of the embedded
model in fp32), so their cost sits inside the request's TTFT. They live in the handoff directory (a
tmpfs where there is one) for the length of one call. Unlinking a job file while its tensors are still
mapped is safe; the pages go when the last tensor does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.blend.blender import Blender, PieceLookup
from engine.blend.options import BlendOptions
from engine.blend.precompute import ChunkKV
from engine.prompt import Prompt
from engine.vllm import held
from engine.vllm.job_file import Decoder, Encoder, JobFileError, read, write

BLEND = "blend"
PRECOMPUTE = "precompute"
CHUNKS = "chunks"


def write_blend_job(
    path: Path, name: str, prompt: Prompt, lookups: list[PieceLookup], opts: BlendOptions
) -> None:
    """A blend job: hold the K/V under `name` (engine/vllm/held.py)."""
    enc = Encoder()
    header = {
        "kind": BLEND,
        "name": name,
        "prompt": enc.prompt(prompt),
        "lookups": [enc.lookup(lk) for lk in lookups],
        "opts": enc.options(opts),
    }
    write(path, header, enc.chunks)


def write_precompute_job(
    path: Path,
    prefix_ids: Sequence[int],
    prefix: ChunkKV | None,
    pieces: Sequence[Sequence[int]],
    stats_len: int | None = None,
) -> None:
    """A job for the chunk caches of `pieces` after the prefix (Blender.compute_chunks)."""
    enc = Encoder()
    header = {
        "kind": PRECOMPUTE,
        "prefix_ids": list(prefix_ids),
        "prefix": enc.chunk(prefix),
        "pieces": [list(p) for p in pieces],
        "stats_len": stats_len,
    }
    write(path, header, enc.chunks)


def read_job(path: str, directory: str) -> dict[str, Any]:
    """A job file, from `directory` (our connector's handoff directory) only, decoded: `kind` and
    the job's fields as the writers above took them. JobFileError for a malformed file."""
    where = Path(path).resolve()
    if where.parent != Path(directory).resolve():
        raise ValueError(f"job file {path} is outside {directory}")
    header, chunks = read(where, mapped=True)
    dec = Decoder(chunks)
    kind = header.get("kind")
    if kind == BLEND:
        name = header.get("name")
        lookups = header.get("lookups")
        if not isinstance(name, str) or not isinstance(lookups, list):
            raise JobFileError("a blend job needs a name and a list of lookups")
        prompt = dec.prompt(header.get("prompt"))
        return {
            "kind": kind,
            "name": name,
            "prompt": prompt,
            "lookups": [dec.lookup(lk) for lk in lookups],
            "opts": dec.options(header.get("opts")),
        }
    if kind == PRECOMPUTE:
        pieces = header.get("pieces")
        if not isinstance(pieces, list):
            raise JobFileError("a precompute job needs a list of pieces")
        stats_len = header.get("stats_len")
        if stats_len is not None and (type(stats_len) is not int or stats_len < 0):
            raise JobFileError("a precompute job's stats_len must be a non-negative integer or null")
        return {
            "kind": kind,
            "prefix_ids": dec.ids(header.get("prefix_ids")),
            "prefix": dec.chunk(header.get("prefix")),
            "pieces": [dec.ids(p) for p in pieces],
            "stats_len": stats_len,
        }
    raise JobFileError(f"unknown job kind {kind!r}")


def read_chunks(path: Path) -> tuple[ChunkKV | None, list[ChunkKV]]:
    """A precompute job's result file: the prefix's cache (None when the job sent one) and each
    piece's, read into memory (they go into the store)."""
    header, chunks = read(path, mapped=False)
    dec = Decoder(chunks)
    listed = header.get("chunks")
    if header.get("kind") != CHUNKS or not isinstance(listed, list):
        raise JobFileError("not a chunk-cache result")
    found = [dec.chunk(i) for i in listed]
    if any(c is None for c in found):
        raise JobFileError("a result lists a missing chunk cache")
    return dec.chunk(header.get("prefix")), [c for c in found if c is not None]


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
    fresh, chunks = blender.compute_chunks(
        job["prefix_ids"], job["prefix"], job["pieces"], job.get("stats_len")
    )
    enc = Encoder()
    header = {"kind": CHUNKS, "prefix": enc.chunk(fresh), "chunks": [enc.chunk(c) for c in chunks]}
    write(out, header, enc.chunks)
    return str(out)
