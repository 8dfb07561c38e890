"""Layer-by-layer delivery of chunk entries (TieredStore.get_many_layered)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cache import CodecOptions, StoreConfig, TieredStore
from cache.entry import ChunkEntry
from cache.layered import FetchFailed, LayeredFetch
from cache.layered_read import fill_layered
from cache.redis_tier import RedisTier
from tests.cache.conftest import FINGERPRINT, RedisServer, make_entry, same

PART = 4096


def redis_store(server: RedisServer, tmp_path: Path | None = None, **kw: object) -> TieredStore:
    opts: dict[str, object] = {
        "memory_bytes": 0,
        "redis_url": server.url,
        "redis_part_bytes": PART,
        "redis_timeout_s": 1.0,
        "model_fingerprint": FINGERPRINT,
        "disk_dir": str(tmp_path) if tmp_path else None,
    }
    opts.update(kw)
    return TieredStore(StoreConfig(**opts))  # type: ignore[arg-type]


def big(seed: int) -> ChunkEntry:
    return make_entry(seed, tokens=64, layers=6, heads=2, dim=32)  # ~98 KB: 24 parts of 4 KiB


class Recorder(LayeredFetch):
    """Records (key index, ready layers) as the store releases layers."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys)
        self.events: list[tuple[int, int]] = []

    def set_entry(self, i: int, entry: ChunkEntry, ready_layers: int = 1 << 30) -> None:
        self.events.append((i, ready_layers))
        super().set_entry(i, entry, ready_layers)

    def advance(self, i: int, ready_layers: int) -> None:
        self.events.append((i, ready_layers))
        super().advance(i, ready_layers)


def test_split_entries_arrive_in_layer_order(redis_server: RedisServer) -> None:
    entries = [big(i) for i in range(3)]
    with redis_store(redis_server) as store:
        store.put_many(entries)
        store.flush()
        keys = [e.key for e in entries]
        fetch = Recorder(keys)
        fill_layered(store, keys, fetch)
        ready = [0, 0, 0]
        first_complete = None
        for n, (i, layers) in enumerate(fetch.events):
            ready[i] = max(ready[i], layers)
            if first_complete is None and max(ready) >= 6:
                first_complete = n
                assert min(ready) >= 1  # layer 0 of every entry came before any entry was complete
        assert first_complete is not None
        for layer in range(6):
            got = fetch.layer(layer, timeout=5)
            for kv, e in zip(got, entries, strict=True):
                assert kv is not None and kv[0].equal(e.k[layer]) and kv[1].equal(e.v[layer])
        assert all(same(a, b) for a, b in zip(fetch.entries(), entries, strict=True))
        s = store.stats().tier("redis")
        assert s.hits == 3 and s.misses == 0 and s.corrupt == 0


def test_every_source_in_one_fetch(redis_server: RedisServer, tmp_path: Path) -> None:
    with redis_store(redis_server, tmp_path, memory_bytes=1 << 20) as store:
        memory, redis_tier, disk = store.tiers
        in_memory, on_disk, split, small, lz4 = make_entry(1), make_entry(2), big(3), make_entry(4), big(5)
        memory.put_many([in_memory])
        disk.put_many([on_disk])
        redis_tier.put_many([split, small])
        RedisTier(redis_server.url, part_bytes=PART, codec=CodecOptions("lz4")).put_many([lz4])
        wanted = [in_memory, on_disk, split, small, make_entry(6), lz4]
        handle = store.get_many_layered([e.key for e in wanted])
        layer1 = handle.layer(1, timeout=5)
        assert layer1[4] is None
        for got, e in zip(layer1, wanted, strict=True):
            if e is not wanted[4]:
                assert got is not None and got[0].equal(e.k[1]) and got[1].equal(e.v[1])
        result = handle.entries(timeout=5)
        assert result[4] is None and all(
            same(a, b) for a, b in zip(result, wanted, strict=True) if b is not wanted[4]
        )
        store.flush()
        assert memory.contains_many([on_disk.key, split.key, lz4.key]) == [True, True, True]
        assert redis_tier.contains_many([on_disk.key]) == [True]  # promoted from disk


def _corrupt_part(server: RedisServer, key: str, part: int) -> None:
    r = server.client()
    # the test client leaves replies undecoded: names and values are bytes
    names = [n for n in r.keys(f"rbkv:{{{key}}}:*") if isinstance(n, bytes)]
    name = next(n for n in names if n.endswith(f":{part}".encode()))
    raw = r.get(name)
    assert isinstance(raw, bytes)
    value = bytearray(raw)
    value[100] ^= 1
    r.set(name, bytes(value))


def test_corrupt_part_before_use_is_a_plain_miss(redis_server: RedisServer) -> None:
    entry, other = big(1), big(2)
    with redis_store(redis_server) as store:
        store.put_many([entry, other])
        store.flush()
        _corrupt_part(redis_server, entry.key, 20)
        fetch = LayeredFetch([entry.key, other.key])
        fill_layered(store, fetch.keys, fetch)
        got = fetch.layer(5, timeout=5)
        assert got[0] is None and got[1] is not None
        assert fetch.entries()[0] is None and same(fetch.entries()[1], other)
        s = store.stats().tier("redis")
        assert s.corrupt == 1 and s.hits == 1 and s.misses == 1
        assert store.get_many([entry.key]) == [None]  # dropped


class ConsumesEarly(LayeredFetch):
    """Plays the engine: uses layer 0 as soon as it is released."""

    def advance(self, i: int, ready_layers: int) -> None:
        super().advance(i, ready_layers)
        if not self._handed_out:
            self.layer(0)


def test_corrupt_part_after_use_raises(redis_server: RedisServer) -> None:
    entry = big(1)
    with redis_store(redis_server) as store:
        store.put_many([entry])
        store.flush()
        _corrupt_part(redis_server, entry.key, 20)
        fetch = ConsumesEarly([entry.key])
        fill_layered(store, fetch.keys, fetch)
        with pytest.raises(FetchFailed) as info:
            fetch.layer(5, timeout=5)
        assert info.value.keys == [entry.key]
        assert fetch.entries() == [None]


def test_redis_down_streams_nothing_and_disk_still_serves(redis_server: RedisServer, tmp_path: Path) -> None:
    entry, local = big(1), make_entry(2)
    with redis_store(redis_server, tmp_path) as store:
        store.put_many([entry, local])
        store.flush()
        redis_server.stop()
        handle = store.get_many_layered([entry.key, local.key])
        result = handle.entries(timeout=10)
        assert same(result[0], entry) and same(result[1], local)  # both were also on disk
        assert store.stats().tier("redis").errors >= 1


def test_cluster_tier_delivers_whole_entries(redis_cluster: RedisServer) -> None:
    entry = big(1)
    with redis_store(redis_cluster) as store:
        store.put_many([entry])
        store.flush()
        handle = store.get_many_layered([entry.key])
        got = handle.layer(3, timeout=5)[0]
        assert got is not None and got[0].equal(entry.k[3])


class FreezesRedis(ConsumesEarly):
    """Uses layer 0, then freezes Redis while the rest is in flight."""

    server: RedisServer

    def advance(self, i: int, ready_layers: int) -> None:
        first = not self._handed_out
        super().advance(i, ready_layers)
        if first:
            self.server.freeze()


def test_redis_frozen_mid_stream(redis_server: RedisServer) -> None:
    entry = big(1)
    with redis_store(redis_server, redis_timeout_s=0.3, redis_backoff_s=0.05) as store:
        store.put_many([entry])
        store.flush()
        store.tier("redis").window = 2  # type: ignore[attr-defined]  # most parts not yet requested
        fetch = FreezesRedis([entry.key])
        fetch.server = redis_server
        try:
            fill_layered(store, fetch.keys, fetch)
        finally:
            redis_server.resume()
        with pytest.raises(FetchFailed):
            fetch.layer(5, timeout=5)
        assert fetch.entries() == [None]
        assert store.stats().tier("redis").errors == 1
        time.sleep(0.1)
        again = store.get_many_layered([entry.key]).entries(timeout=5)
        assert same(again[0], entry)  # reconnected by itself
