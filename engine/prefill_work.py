"""What a prefill task computes: one prompt, plainly or blended, into a K/V cache of its own."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from cache.entry import ChunkEntry
from engine.blend.blender import Blender, BlendResult, blend_usage
from engine.blend.options import BlendOptions
from engine.cold_pieces import prefill_once
from engine.kv_cache import KVCache
from engine.prompt import Prompt


@dataclass
class Prefilled:
    """What a finished prefill hands to decoding: the prompt's K/V and the last position's logits."""

    kv: KVCache
    logits: torch.Tensor
    usage: dict[str, int]
    timings: dict[str, float]
    blend: BlendResult | None = None  # kept for the chunk-cache write-back after the answer
    entries: list[ChunkEntry] = field(default_factory=list)  # cold pieces' caches, computed here


def prefill_prompt(blender: Blender, prompt: Prompt, blend: BlendOptions | None, salt: str) -> Prefilled:
    """The same work as the engine's unbatched path; the cache holds only the prompt's rows, as decoding
    happens in the batch's own K/V. Uses `blender.model` (a pausing copy inside the scheduler)."""
    started = time.perf_counter()
    model, n = blender.model, len(prompt)
    if blend is None or not blend.reuses:
        kv = model.new_cache(n)
        logits = model.forward(torch.tensor(prompt.ids), kv)
        usage = {"cached_tokens": 0, "recomputed_tokens": 0}
        return Prefilled(kv, logits, usage, {"prefill_ms": (time.perf_counter() - started) * 1000})
    result, entries = prefill_once(blender, prompt, blend, n, salt)
    usage = blend_usage(result)
    timings = {"kv_fetch_ms": result.kv_fetch_ms, "prefill_ms": result.prefill_ms}
    return Prefilled(result.kv, result.logits, usage, timings, result, entries)
