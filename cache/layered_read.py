"""Filling a LayeredFetch from the tiers of a TieredStore (runs in a background thread).

Order: memory hits are released at once; then each blob tier is asked for the keys still
missing. Redis answers whole entries and the manifests of split ones in one round trip;
keys it does not hold go on to the disk tier at once, and only then are the split
entries streamed layer by layer (``cache.redis_stream``), so that no key waits for the
long transfer before its tier is known. A split entry that fails mid-stream is not
retried on disk.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from cache.blob_tier import Blob, BlobTier
from cache.entry import ChunkEntry
from cache.layered import LayeredFetch
from cache.redis_layout import Manifest
from cache.redis_stream import stream_parts
from cache.redis_tier import RedisTier

if TYPE_CHECKING:
    from cache.tiered import TieredStore

log = logging.getLogger(__name__)

Stream = tuple[int, RedisTier, list[int], dict[int, Manifest]]  # level, tier, key indices, manifests


def fill_layered(store: TieredStore, keys: list[str], fetch: LayeredFetch) -> None:
    """Resolve every key of ``fetch``; never raises (an unexpected error ends in misses)."""
    try:
        todo = list(range(len(keys)))
        if store.memory is not None:
            got = store.memory.get_many(keys)
            for i, entry in enumerate(got):
                if entry is not None:
                    fetch.set_entry(i, entry)
            todo = [i for i in todo if got[i] is None]
        streams: list[Stream] = []
        for level, tier in enumerate(store.blob_tiers):
            todo = _ask_tier(store, level, tier, keys, todo, fetch, streams)
        for i in todo:
            fetch.miss(i)
        for level, tier, index, manifests in streams:
            done: list[tuple[ChunkEntry, Blob]] = []

            def on_complete(_j: int, entry: ChunkEntry, blob: memoryview, done: list = done) -> None:
                done.append((entry, blob))

            stream_parts(tier, [keys[i] for i in index], manifests, fetch, index.__getitem__, on_complete)
            if done:
                store.promote(done, level)
    except Exception:
        log.exception("layered chunk fetch failed")
    finally:
        fetch.finish()


def _ask_tier(
    store: TieredStore,
    level: int,
    tier: BlobTier,
    keys: list[str],
    todo: list[int],
    fetch: LayeredFetch,
    streams: list[Stream],
) -> list[int]:
    if not todo:
        return todo
    sub = [keys[i] for i in todo]
    streamed: set[int] = set()
    if isinstance(tier, RedisTier) and tier.can_stream:
        start = time.perf_counter()
        blobs, manifests = tier.read_main(sub)
        found = tier.decode_blobs(sub, blobs, start, pending=frozenset(manifests))
        if manifests:
            streams.append((level, tier, list(todo), manifests))
            streamed = {todo[j] for j in manifests}
    else:
        found = tier.get_with_blobs(sub)
    promote = []
    for i, hit in zip(todo, found, strict=True):
        if hit is not None:
            fetch.set_entry(i, hit[0])
            promote.append(hit)
    if promote:
        store.promote(promote, level)
    return [i for i, hit in zip(todo, found, strict=True) if hit is None and i not in streamed]
