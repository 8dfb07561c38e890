from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import torch

from cache.codec import HEADER_SIZE, CodecOptions, encode
from cache.disk_tier import DiskTier
from cache.entry import ChunkEntry
from cache.eviction import CraftPolicy
from tests.cache.conftest import FINGERPRINT, make_entry, same


def tier_at(path: Path, capacity: int = 1 << 20, **kw: object) -> DiskTier:
    return DiskTier(str(path), capacity, model_fingerprint=FINGERPRINT, **kw)  # type: ignore[arg-type]


def test_round_trip_contains_delete(tmp_path: Path) -> None:
    tier = tier_at(tmp_path)
    a, b = make_entry(1), make_entry(2, dtype=torch.float32)
    tier.put_many([a, b])
    assert (tmp_path / a.key[:2] / f"{a.key}.kv").is_file()
    got = tier.get_many([a.key, make_entry(3).key, b.key])
    assert same(got[0], a) and got[1] is None and same(got[2], b)
    assert tier.contains_many([a.key, make_entry(3).key]) == [True, False]
    tier.delete(a.key)
    assert tier.get_many([a.key]) == [None] and tier.contains_many([a.key]) == [False]
    s = tier.stats().tier("disk")
    assert (s.hits, s.misses, s.writes, s.entries, s.corrupt) == (2, 2, 2, 1, 0)
    assert list((tmp_path / ".tmp").iterdir()) == []


@pytest.mark.parametrize("options", [CodecOptions("lz4"), CodecOptions("zstd", quantize=True)])
def test_codec_options_apply(tmp_path: Path, options: CodecOptions) -> None:
    entry = make_entry(1, tokens=32, dim=64)
    tier = DiskTier(str(tmp_path), 1 << 20, codec=options)
    tier.put_many([entry])
    out = tier.get_many([entry.key])[0]
    assert out is not None and out.k.shape == entry.k.shape
    if not options.quantize:
        assert same(out, entry)


def test_budget_eviction_follows_reads(tmp_path: Path) -> None:
    entries = [make_entry(i) for i in range(4)]
    size = len(encode(entries[0]))
    tier = tier_at(tmp_path, capacity=3 * size)
    tier.put_many(entries[:3])
    tier.get_many([entries[0].key])
    tier.put_many([entries[3]])
    assert [x is not None for x in tier.get_many([e.key for e in entries])] == [True, False, True, True]
    s = tier.stats().tier("disk")
    assert s.evictions == 1 and s.bytes_used == 3 * size
    assert not (tmp_path / entries[1].key[:2] / f"{entries[1].key}.kv").exists()


def test_craft_policy_on_disk(tmp_path: Path) -> None:
    entries = [make_entry(i) for i in range(4)]
    tier = tier_at(tmp_path, capacity=3 * len(encode(entries[0])), policy=CraftPolicy())
    tier.put_many(entries[:3])
    for _ in range(3):
        tier.get_many([entries[0].key, entries[1].key])
    tier.get_many([entries[2].key])
    tier.put_many([entries[3]])
    assert [x is not None for x in tier.get_many([e.key for e in entries])] == [True, True, False, True]


def test_index_is_rebuilt_from_the_directory(tmp_path: Path) -> None:
    entries = [make_entry(i) for i in range(4)]
    size = len(encode(entries[0]))
    tier_at(tmp_path).put_many(entries[:3])
    for entry, mtime in zip(entries[:3], (100, 300, 200), strict=True):
        os.utime(tmp_path / entry.key[:2] / f"{entry.key}.kv", (mtime, mtime))
    (tmp_path / ".tmp" / "stale.tmp").write_bytes(b"x")
    os.utime(tmp_path / ".tmp" / "stale.tmp", (1, 1))
    tier = tier_at(tmp_path, capacity=2 * size)  # oldest (entries[0]) goes at start
    assert tier.stats().tier("disk").entries == 2
    tier.put_many([entries[3]])  # then entries[2] (mtime 200)
    assert [x is not None for x in tier.get_many([e.key for e in entries])] == [False, True, False, True]
    assert not (tmp_path / ".tmp" / "stale.tmp").exists()


def test_files_of_another_process_are_adopted(tmp_path: Path) -> None:
    reader, writer = tier_at(tmp_path), tier_at(tmp_path)
    entry = make_entry(1)
    writer.put_many([entry])
    assert same(reader.get_many([entry.key])[0], entry)
    assert reader.stats().tier("disk").entries == 1


def _damage(kind: str, path: Path, entry: ChunkEntry) -> None:
    data = bytearray(path.read_bytes())
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "flipped":
        data[-3] ^= 1
        path.write_bytes(data)
    elif kind == "version":
        struct.pack_into("<H", data, 4, 7)
        path.write_bytes(data)
    elif kind == "other_key":  # a valid entry, stored under the wrong name
        path.write_bytes(encode(make_entry(99)))
    elif kind == "other_model":
        path.write_bytes(encode(make_entry(1, fingerprint="another-model")))
    assert kind == "empty" or len(data) > HEADER_SIZE


@pytest.mark.parametrize("kind", ["truncated", "empty", "flipped", "version", "other_key", "other_model"])
def test_bad_files_are_dropped_and_counted(tmp_path: Path, kind: str) -> None:
    tier = tier_at(tmp_path)
    entry, good = make_entry(1), make_entry(2)
    tier.put_many([entry, good])
    path = tmp_path / entry.key[:2] / f"{entry.key}.kv"
    _damage(kind, path, entry)
    got = tier.get_many([entry.key, good.key])
    assert got[0] is None and same(got[1], good)
    assert not path.exists()
    s = tier.stats().tier("disk")
    assert s.corrupt == 1 and s.entries == 1
