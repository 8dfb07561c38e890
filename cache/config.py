"""Configuration of the chunk-KV store; built by the caller, never read from the environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Compression = Literal["none", "lz4", "zstd"]
EvictionName = Literal["lru", "craft"]

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class StoreConfig:
    """Every knob of ``TieredStore``. A tier whose location is None (or budget 0) is off.

    - ``memory_bytes``: budget of the in-process tier (decoded tensors); 0 disables it.
    - ``redis_url``: ``redis://``, ``rediss://`` or ``unix://`` for one server;
      ``redis+cluster://`` / ``rediss+cluster://`` (or ``redis_cluster=True``) for a Cluster.
    - ``redis_bytes``: if > 0, the store sets the server's ``maxmemory`` to it (with an LRU
      ``maxmemory-policy``) when it first connects; 0 leaves the server's settings alone,
      which is what a shared or managed Redis needs.
    - ``redis_ttl_s``: expiry of every Redis key, refreshed on each hit; None = no expiry.
    - ``redis_part_bytes``: encoded entries larger than this are split into parts. Parts
      are the unit of layer-by-layer streaming: 256 KiB releases layer 0 of a batch after
      a small fraction of the transfer at the same throughput (bench/kv_store.py).
    - ``redis_timeout_s``: socket connect/read timeout; a slower Redis counts as a miss.
    - ``redis_backoff_s``: after a Redis error the tier is skipped for this long, so a dead
      or frozen server costs one timeout, not one per request.
    - ``disk_dir`` / ``disk_bytes``: local directory tier and its budget.
    - ``compression`` / ``quantize``: how Redis and disk encode entries (memory keeps tensors).
    - ``eviction``: "lru", or "craft" (decayed reuse x recompute cost / bytes).
    - ``craft_turnovers``: the craft policy's hit counts halve every ``craft_turnovers`` x
      (entries in the tier) accesses; larger favours frequency, smaller recency.
    - ``write_queue``: pending background writes (batches) before new ones are dropped.
    - ``model_fingerprint``: if set, entries of another model are rejected as corrupt.
    - ``namespace``: prefix of Redis key names, to share one server between deployments.
    - ``entry_secret``: if set, Redis and disk entries are tagged with a key derived from it
      (``cache.entry_auth``) and an entry without a valid tag is a miss, counted as
      ``unauthenticated``; replicas that share a tier must share the secret.
    - ``encrypt_entries``: also encrypt the K/V of Redis and disk entries (AES-256-GCM under a key
      derived from ``entry_secret``, bound to the entry's key and model), so a shared tier holds
      no readable K/V; such entries are read whole, not layer by layer. Needs ``entry_secret``.
    - ``memory_tenant_bytes`` / ``redis_tenant_bytes`` / ``disk_tenant_bytes``: the bytes each
      tenant is guaranteed in that tier (``cache.quota``): eviction takes from the tenant most
      over its quota, within it by the tier's policy, and never pushes a tenant below its quota
      for another one's write. 0 (default): no quotas, one policy over the whole tier. Redis
      quotas need ``redis_bytes`` (the tier keeps charged bytes below 60% of it).
    """

    memory_bytes: int = 2 * GiB
    redis_url: str | None = None
    redis_bytes: int = 0
    redis_ttl_s: int | None = 7 * 24 * 3600
    redis_part_bytes: int = 256 * KiB
    redis_timeout_s: float = 0.5
    redis_backoff_s: float = 1.0
    redis_cluster: bool = False
    disk_dir: str | None = None
    disk_bytes: int = 20 * GiB
    compression: Compression = "none"
    quantize: bool = False
    eviction: EvictionName = "lru"
    craft_turnovers: float = 2.0
    write_queue: int = 256
    model_fingerprint: str | None = None
    namespace: str = "rbkv"
    entry_secret: bytes | None = None
    encrypt_entries: bool = False
    memory_tenant_bytes: int = 0
    redis_tenant_bytes: int = 0
    disk_tenant_bytes: int = 0

    def __post_init__(self) -> None:
        if self.memory_bytes < 0 or self.redis_bytes < 0 or self.disk_bytes < 0:
            raise ValueError("byte budgets must be >= 0")
        if min(self.memory_tenant_bytes, self.redis_tenant_bytes, self.disk_tenant_bytes) < 0:
            raise ValueError("per-tenant quotas must be >= 0")
        if self.redis_tenant_bytes and self.redis_url and not self.redis_bytes:
            raise ValueError("per-tenant Redis quotas need redis_bytes (the tier's budget)")
        if self.encrypt_entries and not self.entry_secret:
            raise ValueError("encrypt_entries needs entry_secret")
        if self.redis_part_bytes < 4096:
            raise ValueError("redis_part_bytes must be at least 4096")
        if self.redis_timeout_s <= 0:
            raise ValueError("redis_timeout_s must be > 0")
        if self.redis_ttl_s is not None and self.redis_ttl_s <= 0:
            raise ValueError("redis_ttl_s must be > 0 or None")
        if self.compression not in ("none", "lz4", "zstd"):
            raise ValueError(f"unknown compression {self.compression!r}")
        if self.eviction not in ("lru", "craft"):
            raise ValueError(f"unknown eviction policy {self.eviction!r}")
        if self.craft_turnovers <= 0:
            raise ValueError("craft_turnovers must be > 0")
        if self.write_queue < 1:
            raise ValueError("write_queue must be >= 1")
        if not self.namespace or "{" in self.namespace or "}" in self.namespace:
            raise ValueError("namespace must be non-empty and free of braces")
