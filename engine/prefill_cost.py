"""What a request's prefill will cost after reuse, in tokens through the whole model: the key of
shortest-remaining-prefill-first admission (engine/scheduler.py)."""

from __future__ import annotations

import math

from engine.blend.chunk_cache import ChunkCache
from engine.blend.options import BlendOptions
from engine.prompt import Prompt


def prefill_cost(cache: ChunkCache, prompt: Prompt, blend: BlendOptions | None, salt: str) -> int:
    """A full prefill costs the prompt's length. A blended one costs its query, its recomputed share
    of warm pieces, and for a cold piece its reusable computation plus that share (engine/cold_pieces).
    One batched existence check in the store, no entry transferred; a store fault makes all look cold."""
    n = len(prompt)
    if blend is None or not blend.reuses or len(prompt.pieces) < 2:
        return n
    docs = prompt.pieces[1:-1]
    warm = cache.warm_many([p.ids for p in docs], prompt.pieces[0].ids, salt)
    ratio = 0.0 if blend.mode == "reuse" else blend.ratio
    warm_tokens = sum(len(p.ids) for p, w in zip(docs, warm, strict=True) if w)
    cold_tokens = sum(len(p.ids) for p, w in zip(docs, warm, strict=True) if not w)
    if blend.mode == "prefix":
        return n - (warm_tokens if all(warm) else 0)
    return len(prompt.pieces[-1].ids) + math.ceil(ratio * warm_tokens + (1 + ratio) * cold_tokens)
