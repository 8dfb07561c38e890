from __future__ import annotations

import threading

import pytest

from cache.eviction import CraftPolicy, EvictionPolicy, LRUPolicy
from cache.memory_tier import MemoryTier
from tests.cache.conftest import make_entry, same


def test_put_get_contains_delete() -> None:
    tier = MemoryTier(1 << 20)
    a, b = make_entry(1), make_entry(2)
    tier.put_many([a, b])
    got = tier.get_many([a.key, make_entry(3).key, b.key, a.key])
    assert got[0] is a and got[1] is None and got[2] is b and got[3] is a
    assert tier.contains_many([a.key, make_entry(3).key]) == [True, False]
    tier.delete(a.key)
    assert tier.get_many([a.key]) == [None]
    s = tier.stats().tier("memory")
    assert (s.hits, s.misses, s.writes, s.entries, s.bytes_used) == (3, 2, 2, 1, b.nbytes)
    assert s.get_latency.count == 2


def test_lru_eviction_by_bytes() -> None:
    entries = [make_entry(i) for i in range(5)]
    size = entries[0].nbytes
    tier = MemoryTier(3 * size)
    tier.put_many(entries[:3])
    tier.get_many([entries[0].key])
    tier.put_many([entries[3]])  # evicts entries[1], the least recently used
    assert [e is not None for e in tier.get_many([e.key for e in entries[:4]])] == [True, False, True, True]
    s = tier.stats().tier("memory")
    assert s.evictions == 1 and s.bytes_used == 3 * size


def test_oversized_entry_is_skipped_and_rewrite_replaces() -> None:
    small = make_entry(1)
    tier = MemoryTier(small.nbytes)
    tier.put_many([make_entry(2, tokens=64)])
    assert tier.stats().tier("memory").skipped_writes == 1
    tier.put_many([small, small])
    assert tier.stats().tier("memory").bytes_used == small.nbytes


@pytest.mark.parametrize(("policy", "evicted"), [(LRUPolicy(), 0), (CraftPolicy(), 2)])
def test_policy_decides_the_victim(policy: EvictionPolicy, evicted: int) -> None:
    entries = [make_entry(i) for i in range(4)]
    tier = MemoryTier(3 * entries[0].nbytes, policy)
    tier.put_many(entries[:3])
    for _ in range(3):
        tier.get_many([entries[0].key, entries[1].key])
    tier.get_many([entries[2].key])  # most recent, but least used
    tier.put_many([entries[3]])
    present = [x is not None for x in tier.get_many([e.key for e in entries])]
    assert present == [i != evicted for i in range(4)]


def test_invalid_key_is_refused() -> None:
    e = make_entry(1)
    with pytest.raises(ValueError):
        MemoryTier(1 << 20).put_many([type(e)("../x", e.k, e.v, e.meta)])


def test_thread_safety_under_concurrent_use() -> None:
    entries = [make_entry(i) for i in range(20)]
    tier = MemoryTier(8 * entries[0].nbytes)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(300):
                e = entries[(seed * 7 + i) % 20]
                tier.put_many([e])
                got = tier.get_many([e.key, entries[i % 20].key])
                assert got[0] is None or same(got[0], e)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = tier.stats().tier("memory")
    assert s.bytes_used <= 8 * entries[0].nbytes and s.entries <= 8
