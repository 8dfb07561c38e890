"""Chunk-KV store: keys, codec, tiers (memory, Redis, disk), eviction and metrics.

Typical use::

    from cache import StoreConfig, TieredStore, chunk_key

    store = TieredStore(StoreConfig(memory_bytes=2 << 30, redis_url=url, disk_dir="/data/kv"))
    key = chunk_key(fingerprint, prefix_id, token_ids, tenant_salt, "bfloat16")
    [entry] = store.get_many([key])          # None: recompute, then store.put_many([...])
    fetch = store.get_many_layered(keys)     # or: layer by layer while the rest arrives
    k0_v0 = fetch.layer(0)                   # [(k[0], v[0]) or None per key]
"""

from cache.codec import CodecOptions, decode, encode
from cache.config import StoreConfig
from cache.disk_tier import DiskTier
from cache.entry import ChunkEntry, ChunkMeta
from cache.errors import CorruptEntry, UnsupportedVersion, WrongModel
from cache.eviction import CraftPolicy, EvictionPolicy, LRUPolicy, make_policy
from cache.keys import chunk_key, is_valid_key
from cache.layered import FetchFailed, LayeredFetch
from cache.memory_tier import MemoryTier
from cache.metrics import HistogramSnapshot, StoreStats, TierStats
from cache.prometheus import register_store_metrics
from cache.redis_tier import RedisTier
from cache.store import ChunkStore
from cache.tiered import TieredStore, build_tiers

__all__ = [
    "ChunkEntry",
    "ChunkMeta",
    "ChunkStore",
    "CodecOptions",
    "CorruptEntry",
    "CraftPolicy",
    "DiskTier",
    "EvictionPolicy",
    "FetchFailed",
    "HistogramSnapshot",
    "LRUPolicy",
    "LayeredFetch",
    "MemoryTier",
    "RedisTier",
    "StoreConfig",
    "StoreStats",
    "TierStats",
    "TieredStore",
    "UnsupportedVersion",
    "WrongModel",
    "build_tiers",
    "chunk_key",
    "decode",
    "encode",
    "is_valid_key",
    "make_policy",
    "register_store_metrics",
]
