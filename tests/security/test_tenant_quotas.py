"""One tenant's flood leaves another tenant's quota intact, in a real Redis shared by replicas."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from cache import StoreConfig, TieredStore
from cache.codec import encode
from cache.entry import ChunkEntry
from cache.quota import TENANT_FIELD, tenant_tag
from cache.redis_tier import QUOTA_FILL, RedisTier
from tests.cache.conftest import FINGERPRINT, RedisServer, make_entry, redis_server, same

__all__ = ["redis_server"]  # the fixture, for this module

MiB = 1 << 20
SECRET = b"replicas share this secret"


def big_entry(seed: int, tenant: str) -> ChunkEntry:
    """About 1 MiB of K/V (split into parts in Redis), charged to ``tenant``."""
    entry = make_entry(seed, tokens=1024, layers=2, heads=2, dim=64, salt=tenant)
    return replace(
        entry, meta=replace(entry.meta, extra={**entry.meta.extra, TENANT_FIELD: tenant_tag(tenant)})
    )


def replica(server: RedisServer, tmp: Path, name: str) -> TieredStore:
    """A gateway's store with only the shared Redis tier: 32 MiB, 8 MiB guaranteed per tenant."""
    config = StoreConfig(
        memory_bytes=0,
        redis_url=server.url,
        redis_bytes=32 * MiB,
        redis_tenant_bytes=8 * MiB,
        redis_timeout_s=5.0,
        model_fingerprint=FINGERPRINT,
        entry_secret=SECRET,
    )
    return TieredStore(config)


def redis_tier(s: TieredStore) -> RedisTier:
    tier = s.tier("redis")
    assert isinstance(tier, RedisTier)
    return tier


def test_a_flood_from_one_tenant_leaves_the_others_quota(redis_server: RedisServer, tmp_path: Path) -> None:
    quiet_gw, flood_gw = replica(redis_server, tmp_path, "a"), replica(redis_server, tmp_path, "b")
    try:
        quiet = [big_entry(i, "quiet") for i in range(7)]  # under its 8 MiB
        quiet_gw.put_many(quiet)
        quiet_gw.flush()
        flood = [big_entry(1000 + i, "flood") for i in range(60)]  # 60 MiB into a 19 MiB budget
        for i in range(0, len(flood), 3):
            flood_gw.put_many(flood[i : i + 3])
            flood_gw.flush()
        # the other replica still finds every one of the quiet tenant's entries, intact
        got = quiet_gw.get_many([e.key for e in quiet])
        assert all(same(g, e) for g, e in zip(got, quiet, strict=True))
        tier = redis_tier(flood_gw)
        # charged bytes are the encoded entries' (K/V, header, metadata, tags)
        assert tier.tenant_bytes_used(tenant_tag("quiet")) == sum(
            len(encode(e, quiet_gw.codec)) for e in quiet
        )
        # the flooder kept only its newest entries, and the budget held
        held = [x is not None for x in flood_gw.get_many([e.key for e in flood])]
        assert not any(held[:30]) and all(held[-5:])
        used = tier.tenant_bytes_used(tenant_tag("flood")) + tier.tenant_bytes_used(tenant_tag("quiet"))
        assert used <= int(32 * MiB * QUOTA_FILL)
        assert tier.stats().tiers[0].evictions > 0
        # nothing of the evicted entries is left behind in Redis (parts included)
        client = redis_server.client()
        evicted = [e.key for e, h in zip(flood, held, strict=True) if not h]
        assert not any(client.keys(f"rbkv:{{{key}}}*") for key in evicted[:10])
    finally:
        quiet_gw.close()
        flood_gw.close()


def test_without_quotas_a_flood_evicts_the_other_tenant(redis_server: RedisServer) -> None:
    tier = RedisTier(redis_server.url, max_bytes=24 * MiB, timeout_s=5.0)
    try:
        quiet = [big_entry(i, "quiet") for i in range(4)]
        tier.put_many(quiet)
        for i in range(0, 60, 3):
            tier.put_many([big_entry(1000 + j, "flood") for j in range(i, i + 3)])
        assert any(x is None for x in tier.get_many([e.key for e in quiet]))
    finally:
        tier.close()


def test_a_dead_redis_with_quotas_is_a_miss_never_an_error(redis_server: RedisServer, tmp_path: Path) -> None:
    s = replica(redis_server, tmp_path, "a")
    try:
        entry = big_entry(1, "quiet")
        redis_server.stop()
        s.put_many([entry])
        s.flush()
        assert s.get_many([entry.key]) == [None]
        assert redis_tier(s).tenant_bytes_used(tenant_tag("quiet")) == 0
        assert s.stats().tiers[0].errors >= 1
    finally:
        s.close()


def test_quota_bookkeeping_never_holds_k_or_v(redis_server: RedisServer, tmp_path: Path) -> None:
    s = replica(redis_server, tmp_path, "a")
    try:
        entry = big_entry(3, "quiet")
        s.put_many([entry])
        s.flush()
        client = redis_server.client()
        names = [n.decode() if isinstance(n, bytes) else n for n in client.keys("rbkv:{quota}*")]
        assert names and all(client.type(n) in (b"hash", b"zset", b"string") for n in names)
        sample = bytes(entry.k.view(torch.uint8).reshape(-1)[:64].numpy())
        for n in names:
            if client.type(n) == b"hash":
                assert all(sample not in v for v in client.hvals(n))
    finally:
        s.close()


def test_quotas_hold_in_a_redis_cluster(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, cluster=True)
    server.start()
    tier = RedisTier(server.url, max_bytes=32 * MiB, tenant_bytes=8 * MiB, timeout_s=5.0)
    try:
        quiet = [big_entry(i, "quiet") for i in range(5)]
        tier.put_many(quiet)
        for i in range(0, 40, 2):
            tier.put_many([big_entry(1000 + j, "flood") for j in range(i, i + 2)])
        assert all(same(g, e) for g, e in zip(tier.get_many([e.key for e in quiet]), quiet, strict=True))
        assert tier.tenant_bytes_used(tenant_tag("flood")) <= int(32 * MiB * QUOTA_FILL)
        assert tier.stats().tiers[0].errors == 0 and tier.stats().tiers[0].evictions > 0
    finally:
        tier.close()
        server.stop()
