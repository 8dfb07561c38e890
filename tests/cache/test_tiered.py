from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cache import StoreConfig, TieredStore, chunk_key, register_store_metrics
from cache.blob_tier import Blob, BlobItem, BlobTier
from cache.codec import CodecOptions
from cache.entry import ChunkEntry
from cache.memory_tier import MemoryTier
from cache.metrics import StoreStats
from tests.cache.conftest import FINGERPRINT, RedisServer, make_entry, same


def full_store(redis_url: str, disk: Path, **kw: object) -> TieredStore:
    opts: dict[str, object] = {
        "memory_bytes": 1 << 20,
        "redis_url": redis_url,
        "redis_part_bytes": 4096,
        "redis_timeout_s": 0.3,
        "redis_backoff_s": 0.05,
        "disk_dir": str(disk),
        "disk_bytes": 1 << 20,
        "model_fingerprint": FINGERPRINT,
    }
    opts.update(kw)
    return TieredStore(StoreConfig(**opts))  # type: ignore[arg-type]


def tiers(store: TieredStore) -> tuple[MemoryTier, BlobTier, BlobTier]:
    return store.tier("memory"), store.tier("redis"), store.tier("disk")  # type: ignore[return-value]


def test_put_reaches_every_tier(redis_url: str, tmp_path: Path) -> None:
    with full_store(redis_url, tmp_path) as store:
        a, b = make_entry(1), make_entry(2, tokens=64, dim=32)
        store.put_many([a, b])
        assert store.get_many([a.key])[0] is a  # memory is written synchronously
        store.flush()
        _, redis_tier, disk = tiers(store)
        for tier in (redis_tier, disk):
            got = tier.get_many([a.key, b.key])
            assert same(got[0], a) and same(got[1], b)
        assert store.contains_many([a.key, make_entry(3).key]) == [True, False]


def test_lower_hits_are_promoted(redis_url: str, tmp_path: Path) -> None:
    with full_store(redis_url, tmp_path) as store:
        memory, redis_tier, disk = tiers(store)
        a, b = make_entry(1), make_entry(2, tokens=64, dim=32)
        disk.put_many([a])
        redis_tier.put_many([b])
        got = store.get_many([a.key, b.key, make_entry(3).key, a.key])
        assert same(got[0], a) and same(got[1], b) and got[2] is None and same(got[3], a)
        assert memory.contains_many([a.key, b.key]) == [True, True]
        store.flush()
        assert redis_tier.contains_many([a.key]) == [True]  # disk hit copied up to Redis
        assert disk.contains_many([b.key]) == [False]  # promotion only goes up
        s = store.stats()
        assert s.tier("disk").hits == 2 and s.tier("redis").hits == 1 and s.tier("memory").misses == 4


def test_redis_down_falls_back_to_disk(redis_server: RedisServer, tmp_path: Path) -> None:
    with full_store(redis_server.url, tmp_path) as store:
        a = make_entry(1)
        store.put_many([a])
        store.flush()
        tiers(store)[0].clear()
        redis_server.stop()
        assert same(store.get_many([a.key])[0], a)
        b = make_entry(2)
        store.put_many([b])
        store.flush()
        assert same(tiers(store)[2].get_many([b.key])[0], b)
        assert store.stats().tier("redis").errors >= 1


class BlockingTier(BlobTier):
    name = "blocking"

    def __init__(self) -> None:
        super().__init__(CodecOptions(), None)
        self.release = threading.Event()
        self.written: list[str] = []

    def read_blobs(self, keys: Sequence[str]) -> list[Blob | None]:
        return [None] * len(keys)

    def write_blobs(self, items: Sequence[BlobItem]) -> None:
        self.release.wait(10)
        self.written.extend(key for key, _, _ in items)

    def drop(self, key: str) -> None:
        pass

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        return [key in self.written for key in keys]

    def delete(self, key: str) -> None:
        pass

    def stats(self) -> StoreStats:
        return StoreStats(tiers=(self.metrics.snapshot(0, 0, 0),))


def test_full_write_queue_drops_instead_of_blocking() -> None:
    slow = BlockingTier()
    store = TieredStore(StoreConfig(write_queue=1), memory=MemoryTier(1 << 20), blob_tiers=[slow])
    entries = [make_entry(i) for i in range(4)]
    for e in entries:
        store.put_many([e])  # returns at once although the tier is stuck
    stats = store.stats()
    assert stats.dropped_writes >= 2 and stats.pending_writes <= 2
    assert all(x is not None for x in store.get_many([e.key for e in entries]))
    slow.release.set()
    store.flush()
    assert len(slow.written) == 4 - store.stats().dropped_writes
    store.close()


def test_another_tenants_entry_is_never_returned(redis_server: RedisServer, tmp_path: Path) -> None:
    with full_store(redis_server.url, tmp_path) as store:
        mine = make_entry(1, salt="tenant-a")
        tokens = [7919 + i for i in range(8)]  # make_entry(1)'s tokens
        theirs_key = chunk_key(FINGERPRINT, "sys-v1", tokens, "tenant-b", "bfloat16")
        assert theirs_key != mine.key
        store.put_many([mine])
        store.flush()
        assert store.get_many([theirs_key]) == [None]
        # Even bytes copied under the other tenant's names are refused (stored key is checked).
        r = redis_server.client()
        r.set(f"rbkv:{{{theirs_key}}}", r.get(f"rbkv:{{{mine.key}}}") or b"")
        src = tmp_path / mine.key[:2] / f"{mine.key}.kv"
        (tmp_path / theirs_key[:2]).mkdir(exist_ok=True)
        (tmp_path / theirs_key[:2] / f"{theirs_key}.kv").write_bytes(src.read_bytes())
        assert store.get_many([theirs_key]) == [None]
        s = store.stats()
        assert s.tier("redis").corrupt == 1 and s.tier("disk").corrupt == 1


def test_layered_fetch(redis_url: str, tmp_path: Path) -> None:
    with full_store(redis_url, tmp_path) as store:
        a, b = make_entry(1), make_entry(2)
        tiers(store)[2].put_many([b])
        store.put_many([a])
        handle = store.get_many_layered([a.key, make_entry(3).key, b.key])
        layer1 = handle.layer(1, timeout=5)
        assert handle.done()
        assert layer1[1] is None
        for got, want in ((layer1[0], a), (layer1[2], b)):
            assert got is not None and got[0].equal(want.k[1]) and got[1].equal(want.v[1])
        assert store.stats().layer_fetches == 1


def test_delete_and_metrics_export(redis_url: str, tmp_path: Path) -> None:
    with full_store(redis_url, tmp_path) as store:
        a = make_entry(1)
        store.put_many([a])
        store.flush()
        store.get_many([a.key, make_entry(2).key])
        registry = CollectorRegistry()
        register_store_metrics(store, registry)
        text = generate_latest(registry).decode()
        assert 'ragblend_kv_hits_total{tier="memory"} 1.0' in text
        assert 'ragblend_kv_misses_total{tier="disk"} 1.0' in text
        assert 'ragblend_kv_get_latency_seconds_count{tier="redis"} 1.0' in text
        assert "ragblend_kv_dropped_writes_total 0.0" in text
        store.delete(a.key)
        assert store.contains_many([a.key]) == [False]
        assert store.get_many([a.key]) == [None]


def test_memory_only_store_and_bad_input() -> None:
    store = TieredStore(StoreConfig(memory_bytes=1 << 20))
    assert [t.name for t in store.tiers] == ["memory"]  # type: ignore[attr-defined]
    entry = make_entry(1)
    store.put_many([entry])
    store.flush()
    assert store.get_many([entry.key])[0] is entry
    with pytest.raises(ValueError):
        store.get_many(["not-a-key"])
    with pytest.raises(ValueError):
        store.put_many([ChunkEntry(entry.key, entry.k[:1], entry.v, entry.meta)])
    store.close()
    with pytest.raises(ValueError):
        StoreConfig(compression="gzip")  # type: ignore[arg-type]
