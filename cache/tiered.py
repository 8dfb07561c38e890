"""The store the engine uses: memory, then Redis, then disk, behind one ChunkStore."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from cache.blob_tier import Blob, BlobItem, BlobTier
from cache.codec import CodecOptions, encode
from cache.config import StoreConfig
from cache.disk_tier import DiskTier
from cache.entry import ChunkEntry
from cache.entry_auth import EntryAuth
from cache.eviction import EvictionPolicy, make_policy
from cache.layered import LayeredFetch
from cache.layered_read import fill_layered
from cache.memory_tier import MemoryTier
from cache.metrics import StoreStats
from cache.redis_tier import RedisTier
from cache.store import ChunkStore, check_entries, check_keys
from cache.writer import BackgroundWriter

log = logging.getLogger(__name__)


def codec_options(config: StoreConfig) -> CodecOptions:
    """How the blob tiers encode, and the key their entries must be tagged with."""
    auth = EntryAuth(config.entry_secret) if config.entry_secret else None
    return CodecOptions(
        compression=config.compression, quantize=config.quantize, auth=auth, encrypt=config.encrypt_entries
    )


def build_tiers(config: StoreConfig) -> tuple[MemoryTier | None, list[BlobTier]]:
    """The tiers ``config`` enables: the memory tier and the blob tiers in read order."""
    codec = codec_options(config)

    def new_policy() -> EvictionPolicy:
        return make_policy(config.eviction, config.craft_turnovers)

    memory = None
    if config.memory_bytes > 0:
        memory = MemoryTier(
            config.memory_bytes,
            make_policy(config.eviction, config.craft_turnovers),
            tenant_bytes=config.memory_tenant_bytes,
            new_policy=new_policy,
        )
    blobs: list[BlobTier] = []
    if config.redis_url:
        blobs.append(
            RedisTier(
                config.redis_url,
                cluster=config.redis_cluster,
                ttl_s=config.redis_ttl_s,
                part_bytes=config.redis_part_bytes,
                timeout_s=config.redis_timeout_s,
                backoff_s=config.redis_backoff_s,
                max_bytes=config.redis_bytes,
                namespace=config.namespace,
                codec=codec,
                model_fingerprint=config.model_fingerprint,
                tenant_bytes=config.redis_tenant_bytes,
            )
        )
    if config.disk_dir and config.disk_bytes > 0:
        blobs.append(
            DiskTier(
                config.disk_dir,
                config.disk_bytes,
                make_policy(config.eviction, config.craft_turnovers),
                codec=codec,
                model_fingerprint=config.model_fingerprint,
                tenant_bytes=config.disk_tenant_bytes,
                new_policy=new_policy,
            )
        )
    return memory, blobs


class TieredStore(ChunkStore):
    """Reads memory -> Redis -> disk; writes memory now and the rest in the background.

    - ``get_many`` asks each tier only for the keys the tiers above missed, one batched
      call per tier. A hit below memory is put into memory at once (no copy: it is the
      decoded entry) and copied to the blob tiers above it by the background writer, as
      the bytes already read (no re-encode).
    - ``get_many_layered`` does the same from a background thread and hands out layers as
      they are verified, streaming split Redis entries in layer order (``LayeredFetch``).
    - ``put_many`` stores into memory synchronously, then encodes once and writes to every
      blob tier from the writer thread; a full queue drops the write (``dropped_writes``).
    """

    def __init__(
        self,
        config: StoreConfig,
        *,
        memory: MemoryTier | None = None,
        blob_tiers: Sequence[BlobTier] | None = None,
    ) -> None:
        self.config = config
        if memory is None and blob_tiers is None:
            memory, built = build_tiers(config)
            blob_tiers = built
        self.memory = memory
        self.blob_tiers: list[BlobTier] = list(blob_tiers or [])
        self.codec = codec_options(config)
        self.writer = BackgroundWriter(config.write_queue)
        self._fetcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ragblend-kv-fetch")
        self._layer_fetches = 0
        self._lock = threading.Lock()

    @property
    def tiers(self) -> list[ChunkStore]:
        """All tiers, upper first."""
        return ([self.memory] if self.memory is not None else []) + list(self.blob_tiers)

    def tier(self, name: str) -> ChunkStore:
        """The tier called ``name`` ("memory", "redis", "disk"); KeyError if not enabled."""
        for t in self.tiers:
            if getattr(t, "name", None) == name:
                return t
        raise KeyError(name)

    def get_many(self, keys: Sequence[str]) -> list[ChunkEntry | None]:
        check_keys(keys)
        out: list[ChunkEntry | None] = [None] * len(keys)
        missing = list(range(len(keys)))
        if self.memory is not None and missing:
            for i, entry in enumerate(self.memory.get_many(keys)):
                out[i] = entry
            missing = [i for i in missing if out[i] is None]
        for level, tier in enumerate(self.blob_tiers):
            if not missing:
                break
            found = tier.get_with_blobs([keys[i] for i in missing])
            promote: list[tuple[ChunkEntry, Blob]] = []
            for i, hit in zip(missing, found, strict=True):
                if hit is not None:
                    out[i] = hit[0]
                    promote.append(hit)
            if promote:
                self.promote(promote, level)
            missing = [i for i in missing if out[i] is None]
        return out

    def promote(self, hits: list[tuple[ChunkEntry, Blob]], level: int) -> None:
        """Put hits found in blob tier ``level`` into memory now and the blob tiers above it
        in the background."""
        if self.memory is not None:
            self.memory.put_many([entry for entry, _ in hits])
        upper = self.blob_tiers[:level]
        if upper:
            items = [(e.key, blob, e.meta.recompute_cost()) for e, blob in hits]
            self.writer.submit(lambda: self._write_items(upper, items), weight=len(items))

    def get_many_layered(self, keys: Sequence[str]) -> LayeredFetch:
        """Start fetching ``keys`` in the background and return at once; layers of split
        Redis entries are released one by one as they arrive (see ``LayeredFetch``)."""
        check_keys(keys)
        fetch = LayeredFetch(list(keys))
        with self._lock:
            self._layer_fetches += 1
        self._fetcher.submit(fill_layered, self, list(keys), fetch)
        return fetch

    def put_many(self, entries: Sequence[ChunkEntry]) -> None:
        check_entries(entries)
        if self.memory is not None:
            self.memory.put_many(entries)
        if self.blob_tiers and entries:
            batch = list(entries)
            self.writer.submit(lambda: self._write_lower(batch), weight=len(batch))

    def _write_lower(self, entries: list[ChunkEntry]) -> None:
        items = [(e.key, encode(e, self.codec), e.meta.recompute_cost()) for e in entries]
        self._write_items(self.blob_tiers, items)

    def _write_items(self, tiers: Sequence[BlobTier], items: list[BlobItem]) -> None:
        for tier in tiers:
            try:
                tier.timed_write(items)
            except Exception:  # one tier's bug must not stop the others
                log.exception("%s tier: write failed", tier.name)

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        check_keys(keys)
        out = [False] * len(keys)
        for tier in self.tiers:
            missing = [i for i, hit in enumerate(out) if not hit]
            if not missing:
                break
            for i, hit in zip(missing, tier.contains_many([keys[i] for i in missing]), strict=True):
                out[i] = hit
        return out

    def delete(self, key: str) -> None:
        for tier in self.tiers:
            tier.delete(key)

    def flush(self) -> None:
        """Wait until every queued background write and promotion has been done."""
        self.writer.flush()

    def stats(self) -> StoreStats:
        tiers = tuple(s for t in self.tiers for s in t.stats().tiers)
        with self._lock:
            layered = self._layer_fetches
        return StoreStats(
            tiers=tiers,
            pending_writes=self.writer.pending,
            dropped_writes=self.writer.dropped,
            layer_fetches=layered,
        )

    def close(self) -> None:
        self.writer.close()
        self._fetcher.shutdown(wait=True)
        for tier in self.tiers:
            tier.close()
