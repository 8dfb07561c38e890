"""A shared tier is not trusted: an entry that anyone who can write to Redis or the disk could make
(valid checksums, the right key and model) is never used unless it bears this server's tag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cache import StoreConfig, TieredStore
from cache.blob_tier import BlobTier
from cache.codec import CodecOptions, encode
from cache.entry import ChunkEntry
from cache.entry_auth import EntryAuth
from tests.cache.conftest import FINGERPRINT, RedisServer, make_entry, redis_server, same

__all__ = ["redis_server"]  # the fixture, for this module

SECRET = b"replicas share this secret"


def forged_like(entry: ChunkEntry) -> ChunkEntry:
    """Same key and metadata, other K/V: what an attacker would like us to blend."""
    return dataclasses.replace(entry, k=torch.ones_like(entry.k), v=-torch.ones_like(entry.v))


def store(server: RedisServer, disk: Path, secret: bytes | None, **kw: object) -> TieredStore:
    config = StoreConfig(
        memory_bytes=0,
        redis_url=server.url,
        redis_part_bytes=4096,  # big entries go in parts, read layer by layer
        redis_timeout_s=1.0,
        disk_dir=str(disk),
        model_fingerprint=FINGERPRINT,
        entry_secret=secret,
        **kw,  # type: ignore[arg-type]
    )
    return TieredStore(config)


def blob_tiers(s: TieredStore) -> list[BlobTier]:
    return [s.tier("redis"), s.tier("disk")]  # type: ignore[list-item]


@pytest.mark.parametrize("compression", ["none", "lz4"])
@pytest.mark.parametrize("size", ["small", "split"])
def test_a_forged_entry_is_a_miss_and_counted(
    redis_server: RedisServer, tmp_path: Path, compression: str, size: str
) -> None:
    kw = {"tokens": 64, "layers": 6, "dim": 32} if size == "split" else {}
    genuine = make_entry(1, **kw)  # type: ignore[arg-type]
    forged = forged_like(genuine)
    with store(redis_server, tmp_path, SECRET, compression=compression) as s:
        for tier in blob_tiers(s):
            for options in (CodecOptions(compression), CodecOptions(compression, auth=EntryAuth(b"guess"))):  # type: ignore[arg-type]
                tier.write_blobs([(forged.key, encode(forged, options), 1.0)])
                assert tier.get_many([forged.key]) == [None]
            assert tier.stats().tier(tier.name).unauthenticated == 2
        assert s.get_many([forged.key]) == [None]
        assert s.get_many_layered([forged.key]).entries(timeout=5) == [None]


def test_entries_tagged_with_the_shared_secret_are_used(redis_server: RedisServer, tmp_path: Path) -> None:
    genuine = make_entry(2, tokens=64, layers=6, dim=32)
    with store(redis_server, tmp_path / "a", SECRET) as writer:
        writer.put_many([genuine])
        writer.flush()
    # another replica: same secret, same Redis, its own disk
    with store(redis_server, tmp_path / "b", SECRET) as reader:
        assert same(reader.get_many_layered([genuine.key]).entries(timeout=5)[0], genuine)
        assert same(reader.tier("redis").get_many([genuine.key])[0], genuine)
    with store(redis_server, tmp_path / "c", b"another secret") as stranger:
        assert stranger.tier("redis").get_many([genuine.key]) == [None]


def test_a_tampered_layer_is_never_released(redis_server: RedisServer, tmp_path: Path) -> None:
    """Genuine metadata and tags over tampered layer bytes: the layer-by-layer read refuses the
    entry rather than hand out its last layer."""
    genuine = make_entry(3, tokens=64, layers=6, dim=32)
    with store(redis_server, tmp_path, SECRET) as s:
        good = encode(genuine, CodecOptions(auth=EntryAuth(SECRET)))
        bad_entry = dataclasses.replace(genuine, k=genuine.k.clone())
        bad_entry.k[-1].zero_()
        # tags from the genuine entry, bytes and checksums from the tampered one
        tampered = encode(bad_entry, CodecOptions(auth=EntryAuth(SECRET)))
        from cache.blob_layout import read_layout

        head = read_layout(good).body
        forged = bytes(good[:head]) + bytes(tampered[head:])
        s.tier("redis").write_blobs([(genuine.key, forged, 1.0)])  # type: ignore[attr-defined]
        handle = s.get_many_layered([genuine.key])
        assert handle.entries(timeout=5) == [None]
        assert s.stats().tier("redis").unauthenticated + s.stats().tier("redis").corrupt >= 1
