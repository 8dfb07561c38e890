"""In-process tier: decoded entries, bounded by bytes, evicted by a policy (LRU by default)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from cache.entry import ChunkEntry
from cache.eviction import EvictionPolicy, LRUPolicy
from cache.metrics import StoreStats, TierMetrics
from cache.store import ChunkStore, check_entries


class MemoryTier(ChunkStore):
    """Holds ChunkEntry objects themselves, so a hit costs no copy and no decode."""

    name = "memory"

    def __init__(self, capacity_bytes: int, policy: EvictionPolicy | None = None) -> None:
        self._capacity = capacity_bytes
        self._policy = policy if policy is not None else LRUPolicy()
        self._entries: dict[str, ChunkEntry] = {}
        self._used = 0
        self._lock = threading.Lock()
        self.metrics = TierMetrics(self.name)

    def get_many(self, keys: Sequence[str]) -> list[ChunkEntry | None]:
        start = time.perf_counter()
        out: list[ChunkEntry | None] = []
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None:
                    self._policy.touch(key)
                out.append(entry)
        hits = [e for e in out if e is not None]
        self.metrics.add("hits", len(hits))
        self.metrics.add("misses", len(out) - len(hits))
        self.metrics.add("bytes_read", sum(e.nbytes for e in hits))
        self.metrics.get_latency.observe(time.perf_counter() - start)
        return out

    def put_many(self, entries: Sequence[ChunkEntry]) -> None:
        check_entries(entries)
        start = time.perf_counter()
        evicted = 0
        with self._lock:
            for entry in entries:
                size = entry.nbytes
                if size > self._capacity:
                    self.metrics.add("skipped_writes")
                    continue
                old = self._entries.pop(entry.key, None)
                if old is not None:
                    self._used -= old.nbytes
                    self._policy.remove(entry.key)
                while self._used + size > self._capacity:
                    victim = self._policy.victim()
                    if victim is None:
                        break
                    self._drop_locked(victim)
                    evicted += 1
                self._entries[entry.key] = entry
                self._used += size
                self._policy.add(entry.key, size, entry.meta.recompute_cost())
                self.metrics.add("writes")
                self.metrics.add("bytes_written", size)
        self.metrics.add("evictions", evicted)
        self.metrics.put_latency.observe(time.perf_counter() - start)

    def _drop_locked(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._used -= entry.nbytes
        self._policy.remove(key)

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        with self._lock:
            return [key in self._entries for key in keys]

    def delete(self, key: str) -> None:
        with self._lock:
            self._drop_locked(key)

    def clear(self) -> None:
        """Drop every entry (not counted as evictions)."""
        with self._lock:
            for key in list(self._entries):
                self._drop_locked(key)

    def stats(self) -> StoreStats:
        with self._lock:
            entries, used = len(self._entries), self._used
        return StoreStats(tiers=(self.metrics.snapshot(entries, used, self._capacity),))
