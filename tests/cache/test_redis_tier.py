from __future__ import annotations

import pytest
import redis
from redis.cluster import key_slot

from cache.codec import CodecOptions, encode
from cache.redis_tier import RedisTier, is_cluster_url, parse_manifest
from cache.resp_reader import RespReader
from tests.cache.conftest import FINGERPRINT, RedisServer, make_entry, same

PART = 4096


def tier_for(server: RedisServer, **kw: object) -> RedisTier:
    opts: dict[str, object] = {"part_bytes": PART, "timeout_s": 0.5, "backoff_s": 0.05, "ttl_s": 600}
    opts.update(kw)
    return RedisTier(server.url, model_fingerprint=FINGERPRINT, **opts)  # type: ignore[arg-type]


def key_names(r: redis.Redis, pattern: str) -> list[bytes]:
    """Matching key names; the test client leaves replies undecoded, so each one is bytes."""
    names = []
    for name in r.keys(pattern):
        assert isinstance(name, bytes)
        names.append(name)
    return names


def test_small_and_split_entries_round_trip(redis_server: RedisServer) -> None:
    tier = tier_for(redis_server)
    small, big = make_entry(1), make_entry(2, tokens=64, dim=32)
    assert len(encode(small)) <= PART < len(encode(big))
    tier.put_many([small, big])
    got = tier.get_many([big.key, make_entry(3).key, small.key])
    assert same(got[0], big) and got[1] is None and same(got[2], small)
    assert tier.contains_many([small.key, big.key, make_entry(3).key]) == [True, True, False]
    r = redis_server.client()
    manifest = r.get(f"rbkv:{{{big.key}}}")
    assert manifest is not None
    parsed = parse_manifest(manifest)
    assert parsed is not None and parsed[0] == -(-len(encode(big)) // PART)
    names = [n.decode() for n in key_names(r, "rbkv:*")]
    assert len(names) == 2 + parsed[0]
    assert len({key_slot(n.encode()) for n in names if big.key in n}) == 1  # one hash slot per entry
    assert 0 < r.ttl(f"rbkv:{{{big.key}}}") <= 600
    s = tier.stats().tier("redis")
    assert (s.hits, s.misses, s.writes, s.errors) == (2, 1, 2, 0)
    assert s.bytes_written == len(encode(small)) + len(encode(big))


def test_rewrite_replaces_parts_and_delete_cleans_up(redis_server: RedisServer) -> None:
    tier = tier_for(redis_server)
    big = make_entry(2, tokens=64, dim=32)
    tier.put_many([big])
    other = type(big)(big.key, big.k * 2, big.v, big.meta)  # same key, other bytes
    tier.put_many([other])
    assert same(tier.get_many([big.key])[0], other)
    r = redis_server.client()
    parts = -(-len(encode(other)) // PART)
    assert len(r.keys("rbkv:*")) == 1 + parts  # the first write's parts are gone
    tier.delete(big.key)
    assert r.keys("rbkv:*") == [] and tier.get_many([big.key]) == [None]


def test_missing_part_is_a_miss(redis_server: RedisServer) -> None:
    tier = tier_for(redis_server)
    big = make_entry(2, tokens=64, dim=32)
    tier.put_many([big])
    r = redis_server.client()
    r.delete(sorted(n for n in key_names(r, "rbkv:*") if n.count(b":") == 3)[0])
    assert tier.get_many([big.key]) == [None]


@pytest.mark.parametrize("value", [b"garbage", b"RBKV" + b"\x01" * 40, b"RBMF\x01\x02\x00\x00\x00"])
def test_corrupt_values_are_dropped(redis_server: RedisServer, value: bytes) -> None:
    tier = tier_for(redis_server)
    entry, small = make_entry(2, tokens=64, dim=32), make_entry(1)
    tier.put_many([small])
    r = redis_server.client()
    r.set(f"rbkv:{{{entry.key}}}", value)
    got = tier.get_many([entry.key, small.key])
    assert got[0] is None and same(got[1], small)
    assert tier.stats().tier("redis").corrupt == 1
    assert r.get(f"rbkv:{{{entry.key}}}") is None


def test_truncated_and_foreign_entries_are_dropped(redis_server: RedisServer) -> None:
    tier = tier_for(redis_server, part_bytes=1 << 20)
    entry, foreign = make_entry(1), make_entry(1, fingerprint="another-model")
    r = redis_server.client()
    r.set(f"rbkv:{{{entry.key}}}", bytes(encode(entry))[:-10])
    r.set(f"rbkv:{{{foreign.key}}}", bytes(encode(foreign)))
    assert tier.get_many([entry.key, foreign.key]) == [None, None]
    assert tier.stats().tier("redis").corrupt == 2
    assert r.keys("rbkv:*") == []


def test_reader_follows_the_writers_part_size(redis_server: RedisServer) -> None:
    big = make_entry(2, tokens=64, dim=32)
    tier_for(redis_server, part_bytes=4096).put_many([big])
    for reader in (tier_for(redis_server, part_bytes=1 << 20), tier_for(redis_server, part_bytes=5000)):
        assert same(reader.get_many([big.key])[0], big)


def test_password_and_database_in_url(redis_server: RedisServer) -> None:
    redis_server.client().config_set("requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{redis_server.port}/3"
    tier = RedisTier(url, part_bytes=PART, timeout_s=1.0)
    small, big = make_entry(1), make_entry(2, tokens=64, dim=32)
    tier.put_many([small, big])
    got = tier.get_many([small.key, big.key])
    assert same(got[0], small) and same(got[1], big)
    assert redis.Redis(port=redis_server.port, password="s3cret", db=3).exists(f"rbkv:{{{small.key}}}")
    bad = RedisTier(f"redis://:wrong@127.0.0.1:{redis_server.port}/3", timeout_s=1.0)
    assert bad.get_many([small.key]) == [None] and bad.stats().tier("redis").errors == 1


def test_compression_and_quantisation(redis_server: RedisServer) -> None:
    tier = tier_for(redis_server, codec=CodecOptions("zstd", quantize=True))
    entry = make_entry(5, tokens=64, dim=64)
    tier.put_many([entry])
    out = tier.get_many([entry.key])[0]
    assert out is not None and out.k.shape == entry.k.shape
    assert float((out.k.float() - entry.k.float()).abs().max()) < 0.05


def test_maxmemory_is_configured_when_asked(redis_server: RedisServer) -> None:
    tier = tier_for(redis_server, max_bytes=64 << 20)
    assert tier.ping()
    r = redis_server.client()
    assert r.config_get("maxmemory")["maxmemory"] == str(64 << 20)
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"


def test_cluster_round_trip(redis_cluster: RedisServer) -> None:
    assert is_cluster_url(redis_cluster.url)
    tier = tier_for(redis_cluster)
    assert tier.cluster
    small, big = make_entry(1), make_entry(2, tokens=64, dim=32)
    tier.put_many([small, big])
    got = tier.get_many([small.key, big.key, make_entry(3).key])
    assert same(got[0], small) and same(got[1], big) and got[2] is None
    assert tier.stats().tier("redis").errors == 0
    tier.close()


def test_cluster_flag_against_a_plain_server_fails_softly(redis_server: RedisServer) -> None:
    tier = RedisTier(redis_server.url, cluster=True, timeout_s=0.5, backoff_s=0.05)
    entry = make_entry(1)
    tier.put_many([entry])
    assert tier.get_many([entry.key]) == [None]
    assert tier.stats().tier("redis").errors >= 1


@pytest.mark.parametrize("window", [2, 3, 100])
def test_fast_reader_windows(redis_server: RedisServer, window: int) -> None:
    r = redis_server.client()
    values = [bytes([i]) * (1000 + i) for i in range(11)]
    for i, v in enumerate(values):
        r.set(f"w{i}", v)
    reader = RespReader(redis_server.url, 1.0)
    names = [f"w{i}" for i in range(11)] + ["absent"]
    got = reader.get_many(names, window=window)
    assert [None if g is None else bytes(g) for g in got] == [*values, None]
    targets = [memoryview(bytearray(len(v))) for v in values] + [memoryview(bytearray(5))]
    targets[3] = memoryview(bytearray(7))  # wrong size: skipped, reported False
    seen: list[tuple[int, bool]] = []
    ok = reader.get_into(names, targets, on_reply=lambda i, good: seen.append((i, good)), window=window)
    assert ok == [i != 3 for i in range(11)] + [False]
    assert seen == list(enumerate(ok))
    assert all(bytes(t) == v for i, (t, v) in enumerate(zip(targets, values, strict=False)) if i != 3)
    assert reader.get_many(["w0"]) == [values[0]]  # the connection is still in sync
    reader.reset()
