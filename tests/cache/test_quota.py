"""Per-tenant quotas of the memory and disk tiers: a flood evicts the flooder first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cache.codec import encode
from cache.config import StoreConfig
from cache.disk_tier import DiskTier
from cache.entry import ChunkEntry
from cache.memory_tier import MemoryTier
from cache.quota import TENANT_FIELD, TenantLedger, blob_tenant, tenant_tag
from tests.cache.conftest import make_entry


def tenant_entry(seed: int, tenant: str) -> ChunkEntry:
    entry = make_entry(seed, salt=tenant)
    extra = {**entry.meta.extra, TENANT_FIELD: tenant_tag(tenant)}
    return replace(entry, meta=replace(entry.meta, extra=extra))


SIZE = tenant_entry(0, "a").nbytes


def test_tenant_tags_are_one_way_and_distinct() -> None:
    assert tenant_tag("") == ""
    assert tenant_tag("salt-a") != tenant_tag("salt-b")
    assert "salt-a" not in tenant_tag("salt-a")
    assert blob_tenant(encode(tenant_entry(1, "salt-a"))) == tenant_tag("salt-a")
    assert blob_tenant(b"not an entry") == ""


def test_ledger_picks_the_tenant_most_over_its_quota() -> None:
    ledger = TenantLedger(tenant_bytes=100)
    for i in range(3):
        ledger.add(f"a{i}", "a", 50, 1.0)  # a: 150, over by 50
    ledger.add("b0", "b", 80, 1.0)  # b: within quota
    assert ledger.victim("b", 30) == "a0"  # b's write would put b 10 over; a is 50 over
    assert ledger.victim("b", 80) == "b0"  # b would be 60 over: its own oldest goes first
    ledger.remove("a0")
    ledger.remove("a1")
    assert ledger.victim("b", 10) is None  # nobody over quota: nothing may be evicted
    assert ledger.used("a") == 50 and ledger.used("b") == 80


def test_without_quotas_the_ledger_is_one_lru() -> None:
    ledger = TenantLedger(tenant_bytes=0)
    ledger.add("a0", "a", 10, 1.0)
    ledger.add("b0", "b", 10, 1.0)
    ledger.touch("a0")
    assert ledger.victim("a", 10) == "b0"


def test_memory_flood_keeps_the_other_tenants_quota() -> None:
    tier = MemoryTier(10 * SIZE, tenant_bytes=4 * SIZE)
    quiet = [tenant_entry(i, "quiet") for i in range(4)]
    tier.put_many(quiet)
    flood = [tenant_entry(100 + i, "flood") for i in range(200)]
    for i in range(0, len(flood), 10):
        tier.put_many(flood[i : i + 10])
        tier.get_many([e.key for e in flood[i : i + 10]])  # the flooder's entries are the hot ones
    assert all(x is not None for x in tier.get_many([e.key for e in quiet]))
    assert tier.tenant_bytes_used(tenant_tag("quiet")) == 4 * SIZE
    assert tier.tenant_bytes_used(tenant_tag("flood")) == 6 * SIZE
    # within the flooding tenant, its own least recently used went first
    held = tier.get_many([e.key for e in flood])
    assert [x is not None for x in held] == [False] * 194 + [True] * 6
    assert tier.stats().tiers[0].evictions == 194


def test_memory_without_quota_lets_a_flood_evict_everyone() -> None:
    tier = MemoryTier(10 * SIZE)
    quiet = [tenant_entry(i, "quiet") for i in range(4)]
    tier.put_many(quiet)
    tier.put_many([tenant_entry(100 + i, "flood") for i in range(20)])
    assert all(x is None for x in tier.get_many([e.key for e in quiet]))


def test_memory_tenant_under_quota_can_grow_past_it_while_there_is_room() -> None:
    tier = MemoryTier(10 * SIZE, tenant_bytes=2 * SIZE)
    entries = [tenant_entry(i, "only") for i in range(8)]
    tier.put_many(entries)
    assert all(x is not None for x in tier.get_many([e.key for e in entries]))
    # a second tenant's write evicts the first one's surplus, never below its quota
    others = [tenant_entry(100 + i, "other") for i in range(8)]
    tier.put_many(others)
    assert tier.tenant_bytes_used(tenant_tag("only")) >= 2 * SIZE
    assert (
        tier.tenant_bytes_used(tenant_tag("other")) + tier.tenant_bytes_used(tenant_tag("only")) <= 10 * SIZE
    )


def test_memory_write_is_skipped_when_every_tenant_is_within_quota() -> None:
    tier = MemoryTier(4 * SIZE, tenant_bytes=2 * SIZE)
    a = [tenant_entry(i, "a") for i in range(2)]
    b = [tenant_entry(10 + i, "b") for i in range(2)]
    tier.put_many(a + b)
    late = tenant_entry(50, "c")
    tier.put_many([late])
    assert tier.get(late.key) is None
    assert all(x is not None for x in tier.get_many([e.key for e in a + b]))
    assert tier.stats().tiers[0].skipped_writes == 1


def disk_tier(path: Path, capacity: int, quota: int) -> DiskTier:
    return DiskTier(str(path), capacity, tenant_bytes=quota)


def test_disk_flood_keeps_the_other_tenants_quota_also_after_a_restart(tmp_path: Path) -> None:
    blob = len(encode(tenant_entry(0, "quiet")))
    tier = disk_tier(tmp_path, 10 * blob, 4 * blob)
    quiet = [tenant_entry(i, "quiet") for i in range(4)]
    tier.put_many(quiet)
    flood = [tenant_entry(100 + i, "flood") for i in range(60)]
    for i in range(0, len(flood), 6):
        tier.put_many(flood[i : i + 6])
    assert all(x is not None for x in tier.get_many([e.key for e in quiet]))
    assert tier.tenant_bytes_used(tenant_tag("quiet")) == 4 * blob
    assert tier.tenant_bytes_used(tenant_tag("flood")) == 6 * blob
    assert [x is not None for x in tier.get_many([e.key for e in flood])] == [False] * 54 + [True] * 6
    tier.close()
    # a new process rebuilds the tenants from the files' metadata and keeps honouring them
    again = disk_tier(tmp_path, 10 * blob, 4 * blob)
    assert again.tenant_bytes_used(tenant_tag("quiet")) == 4 * blob
    again.put_many([tenant_entry(500 + i, "flood") for i in range(6)])
    assert all(x is not None for x in again.get_many([e.key for e in quiet]))
    assert again.tenant_bytes_used(tenant_tag("flood")) == 6 * blob


def test_negative_quotas_are_refused() -> None:
    with pytest.raises(ValueError, match="quota"):
        StoreConfig(memory_tenant_bytes=-1)
    with pytest.raises(ValueError, match="redis_bytes"):
        StoreConfig(redis_url="redis://127.0.0.1:1/0", redis_tenant_bytes=1 << 20)
