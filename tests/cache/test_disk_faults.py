"""Disk tier under real write failures and concurrent writers in several processes."""

from __future__ import annotations

import logging
import multiprocessing
import resource
import shutil
import signal
from pathlib import Path

import pytest
import torch

from cache.codec import decode, encode
from cache.disk_tier import DiskTier
from cache.entry import ChunkEntry
from tests.cache.conftest import make_entry, same

FORK = multiprocessing.get_context("fork")


def test_unwritable_directory_skips_writes_and_keeps_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = make_entry(1)
    DiskTier(str(tmp_path), 1 << 20).put_many([old])
    tier = DiskTier(str(tmp_path), 1 << 20)
    # Root ignores permission bits, so put a regular file where the temp directory must be.
    shutil.rmtree(tmp_path / ".tmp")
    (tmp_path / ".tmp").write_bytes(b"not a directory")
    new = make_entry(2)
    with caplog.at_level(logging.WARNING):
        tier.put_many([new])  # must not raise
    assert "write skipped" in caplog.text
    s = tier.stats().tier("disk")
    assert s.errors == 1 and s.skipped_writes == 1 and s.writes == 0
    assert same(tier.get_many([old.key])[0], old)
    assert tier.get_many([new.key]) == [None] and tier.stats().tier("disk").entries == 1


def _write_with_size_limit(
    directory: str, blob: bytes, key: str, limit: int, out: multiprocessing.Queue
) -> None:
    # The kernel refuses writes past RLIMIT_FSIZE (EFBIG): a real failing write, as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    tier = DiskTier(directory, 1 << 30)
    tier.write_blobs([(key, blob, 1.0)])
    s = tier.stats().tier("disk")
    out.put((s.errors, s.skipped_writes, s.writes, tier.read_blobs([key])[0] is None))


def test_failing_write_syscall_is_skipped(tmp_path: Path) -> None:
    old, big = make_entry(1), make_entry(2, tokens=256, dim=16)
    DiskTier(str(tmp_path), 1 << 30).put_many([old])
    queue: multiprocessing.Queue = FORK.Queue()
    child = FORK.Process(
        target=_write_with_size_limit, args=(str(tmp_path), bytes(encode(big)), big.key, 4096, queue)
    )
    child.start()
    errors, skipped, writes, missing = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert (errors, skipped, writes, missing) == (1, 1, 0, True)
    tier = DiskTier(str(tmp_path), 1 << 30)
    assert same(tier.get_many([old.key])[0], old)
    assert tier.get_many([big.key]) == [None]
    assert list((tmp_path / ".tmp").iterdir()) == []


def _hammer(directory: str, key: str, blob: bytes, rounds: int) -> None:
    tier = DiskTier(directory, 1 << 30)
    for _ in range(rounds):
        tier.write_blobs([(key, blob, 1.0)])


def _variant(base: ChunkEntry, fill: float) -> ChunkEntry:
    k = torch.full_like(base.k, fill)
    return ChunkEntry(base.key, k, k.clone(), base.meta)


def test_two_processes_writing_one_key(tmp_path: Path) -> None:
    base = make_entry(1, tokens=128, dim=64)
    one, two = _variant(base, 1.0), _variant(base, 2.0)
    writers = [
        FORK.Process(target=_hammer, args=(str(tmp_path), base.key, bytes(encode(e)), 60)) for e in (one, two)
    ]
    for w in writers:
        w.start()
    reader = DiskTier(str(tmp_path), 1 << 30)
    seen: set[float] = set()
    while any(w.is_alive() for w in writers) or not seen:
        blob = reader.read_blobs([base.key])[0]
        if blob is not None:
            entry = decode(blob, expected_key=base.key)  # raises if a reader ever saw a mix
            assert same(entry, one) or same(entry, two)
            seen.add(float(entry.k[0, 0, 0, 0]))
    for w in writers:
        w.join(30)
        assert w.exitcode == 0
    assert seen <= {1.0, 2.0}
    assert reader.stats().tier("disk").corrupt == 0
