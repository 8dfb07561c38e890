"""In-process tier: decoded entries, bounded by bytes, evicted by a policy (LRU by default),
with an optional guaranteed share per tenant (``cache.quota``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from cache.entry import ChunkEntry
from cache.eviction import EvictionPolicy
from cache.metrics import StoreStats, TierMetrics
from cache.quota import TenantLedger, meta_tenant
from cache.store import ChunkStore, check_entries


class MemoryTier(ChunkStore):
    """Holds ChunkEntry objects themselves, so a hit costs no copy and no decode."""

    name = "memory"

    def __init__(
        self,
        capacity_bytes: int,
        policy: EvictionPolicy | None = None,
        *,
        tenant_bytes: int = 0,
        new_policy: Callable[[], EvictionPolicy] | None = None,
    ) -> None:
        self._capacity = capacity_bytes
        self._ledger = TenantLedger(tenant_bytes, policy, new_policy)
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
                    self._ledger.touch(key)
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
                tenant = meta_tenant(entry.meta)
                self._drop_locked(entry.key)
                while self._used + size > self._capacity:
                    victim = self._ledger.victim(tenant, size)
                    if victim is None:
                        break
                    self._drop_locked(victim)
                    evicted += 1
                if self._used + size > self._capacity:
                    self.metrics.add("skipped_writes")  # only tenants within their quota are left
                    continue
                self._entries[entry.key] = entry
                self._used += size
                self._ledger.add(entry.key, tenant, size, entry.meta.recompute_cost())
                self.metrics.add("writes")
                self.metrics.add("bytes_written", size)
        self.metrics.add("evictions", evicted)
        self.metrics.put_latency.observe(time.perf_counter() - start)

    def _drop_locked(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._used -= entry.nbytes
        self._ledger.remove(key)

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        with self._lock:
            return [key in self._entries for key in keys]

    def tenant_bytes_used(self, tenant: str) -> int:
        """Bytes this tier holds for ``tenant`` (``cache.quota.tenant_tag`` of its salt)."""
        with self._lock:
            return self._ledger.used(tenant)

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
