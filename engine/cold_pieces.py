"""Cold documents in one pass: their reusable caches are computed inside the request that meets them.

A piece with no cached version used to be prefilled in the request (attending to every piece before
it) and then computed a second time after the answer, after the prefix alone, to be stored. Here it
is computed once, in its reusable form (after the prefix piece alone, with Cache-Craft statistics,
exactly what a warm-up at ingestion stores), and the request then blends it like any cached piece.
The cache entries are a by-product: storing them after the answer is I/O, not model work.

Cost, for a request whose documents are all new: each piece attends only to the prefix and itself,
so computing them all costs a causal prefill's linear work with less attention; the blend then
recomputes the mode's share of rows (and the query) over the whole prompt. Together about one full
prefill (measured in docs/benchmarks.md). The answer is a blended one, as it will be for the next
request with the same documents, not an exact prefill.
"""

from __future__ import annotations

import time

import torch

from cache.entry import ChunkEntry
from engine.blend.blender import Blender, BlendResult, PieceLookup
from engine.blend.chunk_cache import context_id
from engine.blend.options import BlendOptions
from engine.blend.precompute import ChunkKV, precompute_chunk
from engine.prompt import Prompt


def compute_missing(
    blender: Blender, prompt: Prompt, lookups: list[PieceLookup], salt: str
) -> list[ChunkEntry]:
    """Give every piece without any cached version its base version (the prefix piece first, with no
    context), set as the lookup's `base`; return the entries to store."""
    missing = [lk for lk in lookups if lk.exact is None and lk.base is None]
    if not missing:
        return []
    cache, entries = blender.cache, []
    head = lookups[0]
    prefix: ChunkKV | None = head.exact or head.base
    if prefix is None:
        prefix = precompute_chunk(blender.model, None, torch.tensor(prompt.pieces[0].ids))
        head.exact = head.base = prefix
        entries.append(cache.to_entry(head.exact_key, context_id([]), prefix, salt=salt))
    ctx = context_id(prompt.pieces[0].ids)
    for lk in missing:
        if lk.index == 0:
            continue
        chunk = precompute_chunk(blender.model, prefix, torch.tensor(prompt.pieces[lk.index].ids))
        lk.base = chunk
        if lk.index == 1:  # right after the prefix, its base version is also its exact one
            lk.exact = chunk
        entries.append(cache.to_entry(lk.base_key, ctx, chunk, salt=salt))
    return entries


def prefill_once(
    blender: Blender, prompt: Prompt, opts: BlendOptions, capacity: int, salt: str
) -> tuple[BlendResult, list[ChunkEntry]]:
    """A blended prefill that computes its cold pieces in reusable form first; returns the result and
    the entries the request taught the cache. Mode `prefix` keeps its own plan (exact pieces only)."""
    started = time.perf_counter()
    lookups = blender.lookup(prompt, salt)
    fetch_ms = (time.perf_counter() - started) * 1000
    if opts.mode == "prefix":
        return blender.prefill_found(prompt, lookups, opts, capacity, fetch_ms), []
    entries = compute_missing(blender, prompt, lookups, salt)
    result = blender.prefill_found(prompt, lookups, opts, capacity, fetch_ms)
    # Usage counts as cached only what came from the store, not the pieces computed here.
    result.cached_tokens -= sum(e.k.shape[2] for e in entries)
    return result, entries


def store_after_answer(
    blender: Blender,
    prompt: Prompt,
    result: BlendResult,
    opts: BlendOptions,
    salt: str,
    entries: list[ChunkEntry],
) -> None:
    """The write-back after the answer: the entries computed in the request (no model work), or, in
    mode `prefix`, the blender's own write-back."""
    if opts.mode == "prefix":
        blender.write_back(prompt, result, opts, salt)
    else:
        blender.cache.put_many(entries)
