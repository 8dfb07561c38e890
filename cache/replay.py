"""Replays a trace of chunk lookups through a memory tier to compare eviction policies.

Each request looks its chunks up with one ``get_many``; misses are "recomputed" (their
tokens counted) and written back, as the engine does. Entries carry tiny tensors whose
byte size is proportional to the chunk's token count, so budgets are in those units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cache.entry import ChunkEntry, ChunkMeta
from cache.eviction import EvictionPolicy
from cache.memory_tier import MemoryTier

BYTES_PER_TOKEN = 4  # float32 tensors of shape [1, 1, tokens, 1]

Chunk = tuple[str, int]  # key, token count


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of one replay."""

    lookups: int
    hits: int
    recomputed_tokens: int
    total_tokens: int
    evictions: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


def _entry(key: str, tokens: int) -> ChunkEntry:
    meta = ChunkMeta(tokens, "float32", "replay", "replay", 1, 1, 1)
    t = torch.empty((1, 1, tokens, 1), dtype=torch.float32)
    return ChunkEntry(key, t, t, meta)


def replay(requests: Sequence[Sequence[Chunk]], budget_tokens: int, policy: EvictionPolicy) -> ReplayResult:
    """Run ``requests`` (each a list of (key, token count)) through a memory tier holding
    ``budget_tokens`` tokens of K+V, evicting with ``policy``."""
    tier = MemoryTier(2 * BYTES_PER_TOKEN * budget_tokens, policy)
    hits = recomputed = total = lookups = 0
    for chunks in requests:
        got = tier.get_many([key for key, _ in chunks])
        missed = [(key, n) for (key, n), entry in zip(chunks, got, strict=True) if entry is None]
        lookups += len(chunks)
        hits += len(chunks) - len(missed)
        total += sum(n for _, n in chunks)
        recomputed += sum(n for _, n in missed)
        tier.put_many([_entry(key, n) for key, n in missed])
    evictions = tier.stats().tier("memory").evictions
    return ReplayResult(lookups, hits, recomputed, total, evictions)
