"""Chunk KV caches as store entries: content-addressed keys, conversion both ways."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np

from cache.entry import ChunkEntry, ChunkMeta, dtype_name
from cache.keys import chunk_key
from cache.quota import TENANT_FIELD, tenant_tag
from cache.store import ChunkStore
from engine.blend.precompute import ChunkKV
from engine.config import ModelConfig

log = logging.getLogger(__name__)


def context_id(ids_before: Sequence[int]) -> str:
    """Id of the exact token context a chunk was computed after (its 'precompute prefix')."""
    h = hashlib.blake2b(np.asarray(ids_before, dtype="<i4").tobytes(), digest_size=16)
    return f"ctx-{h.hexdigest()}"


class ChunkCache:
    """The engine's view of the chunk-KV store: keys from (model, context, tokens, tenant, dtype)."""

    def __init__(self, store: ChunkStore, model_config: ModelConfig, fingerprint: str, dtype: str) -> None:
        self.store = store
        self.cfg = model_config
        self.fingerprint = fingerprint
        self.dtype = dtype

    def key(self, ids: Sequence[int], ctx: str, salt: str) -> str:
        return chunk_key(self.fingerprint, ctx, np.asarray(ids, dtype=np.int64), salt, self.dtype)

    def to_entry(
        self, key: str, ctx: str, chunk: ChunkKV, extra: dict[str, object] | None = None, salt: str = ""
    ) -> ChunkEntry:
        """The store entry of `chunk`, charged to the tenant of `salt` (the one its key was made with)."""
        tenant = {TENANT_FIELD: tenant_tag(salt)} if salt else {}
        meta = ChunkMeta(
            token_count=chunk.k.shape[2],
            dtype=dtype_name(chunk.k.dtype),
            model_fingerprint=self.fingerprint,
            prefix_id=ctx,
            num_layers=self.cfg.num_layers,
            num_kv_heads=self.cfg.num_kv_heads,
            head_dim=self.cfg.head_dim,
            craft=chunk.craft,
            extra={"start": chunk.start, "recompute_cost": chunk.k.shape[2], **tenant, **(extra or {})},
        )
        # the store keeps host copies whatever device the chunk was computed on
        k, v = chunk.k.cpu().contiguous(), chunk.v.cpu().contiguous()
        return ChunkEntry(key=key, k=k, v=v, meta=meta)

    def to_chunk(self, entry: ChunkEntry) -> ChunkKV | None:
        """The entry as placed K/V, or None when it does not fit this model (treated as a miss)."""
        meta = entry.meta
        shape = (self.cfg.num_layers, self.cfg.num_kv_heads, meta.token_count, self.cfg.head_dim)
        if meta.model_fingerprint != self.fingerprint or tuple(entry.k.shape) != shape:
            return None
        start = meta.extra.get("start")
        if not isinstance(start, int):
            return None
        return ChunkKV(entry.k, entry.v, start, dict(meta.craft))

    def get_many(self, keys: Sequence[str]) -> list[ChunkEntry | None]:
        try:
            return self.store.get_many(keys)
        except Exception as exc:  # a store fault is a miss: the request recomputes
            log.warning("chunk cache read failed, recomputing: %s", exc)
            return [None] * len(keys)

    def warm_many(self, chunks: Sequence[Sequence[int]], prefix_ids: Sequence[int], salt: str) -> list[bool]:
        """Which document pieces (token ids) have a base cache: computed after `prefix_ids` alone.

        The keys are the base keys Blender.lookup forms for document pieces, so a True means a blend
        request can reuse the chunk at any position. One batched store call, no entry transferred;
        a True may still miss later (evicted since), and a store fault answers all False.
        """
        ctx = context_id(prefix_ids)
        keys = [self.key(ids, ctx, salt) for ids in chunks]
        if not keys:
            return []
        try:
            return list(self.store.contains_many(keys))
        except Exception as exc:  # a store fault only makes every chunk look cold
            log.warning("chunk cache warm-check failed: %s", exc)
            return [False] * len(keys)

    def put_many(self, entries: Sequence[ChunkEntry]) -> None:
        if entries:
            try:
                self.store.put_many(entries)
            except Exception as exc:  # a failed write only costs a later recompute
                log.warning("chunk cache write skipped: %s", exc)
