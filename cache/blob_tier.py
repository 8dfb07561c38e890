"""Base of the tiers that hold encoded bytes (Redis, disk): decode, verify, count."""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from cache.codec import CodecOptions, decode, encode
from cache.entry import ChunkEntry
from cache.errors import CorruptEntry
from cache.metrics import TierMetrics
from cache.store import ChunkStore, check_entries

log = logging.getLogger(__name__)

Blob = Any  # bytes, bytearray, memoryview or mmap holding one encoded entry
BlobItem = tuple[str, Blob, float]  # key, encoded entry, recompute cost (for eviction)


class BlobTier(ChunkStore):
    """A tier storing ``cache.codec`` bytes. Subclasses move bytes; this class decodes.

    Every blob read is verified (header, CRC, stored key, model fingerprint) before it is
    returned; a bad one is dropped from the tier and counted in ``corrupt``.
    """

    name = "blob"

    def __init__(self, codec: CodecOptions, model_fingerprint: str | None) -> None:
        self.codec = codec
        self.model_fingerprint = model_fingerprint
        self.metrics = TierMetrics(self.name)

    @abstractmethod
    def read_blobs(self, keys: Sequence[str]) -> list[Blob | None]:
        """Raw bytes per key or None; backend failures are counted and read as misses."""

    @abstractmethod
    def write_blobs(self, items: Sequence[BlobItem]) -> None:
        """Store encoded entries; failures are counted and skipped, never raised."""

    @abstractmethod
    def drop(self, key: str) -> None:
        """Remove a key found corrupt (best effort, never raises)."""

    def get_with_blobs(self, keys: Sequence[str]) -> list[tuple[ChunkEntry, Blob] | None]:
        """Like ``get_many`` but also returns each hit's verified bytes, so a promotion to
        another blob tier can copy them without encoding again."""
        start = time.perf_counter()
        return self.decode_blobs(keys, self.read_blobs(keys), start)

    def decode_one(self, key: str, blob: Blob) -> ChunkEntry | None:
        """Decode and verify ``blob``; a bad one is dropped, counted and read as None."""
        try:
            return decode(
                blob, expected_key=key, expected_fingerprint=self.model_fingerprint, auth=self.codec.auth
            )
        except CorruptEntry as exc:
            self.corrupt(key, exc)
            return None

    def corrupt(self, key: str, exc: CorruptEntry) -> None:
        """Count, log and drop an entry found bad."""
        log.warning("%s tier: dropping bad entry %s (%s)", self.name, key[:16], exc)
        self.metrics.add("unauthenticated" if exc.reason == "mac" else "corrupt")
        self.drop(key)

    def decode_blobs(
        self,
        keys: Sequence[str],
        blobs: Sequence[Blob | None],
        start: float,
        pending: frozenset[int] = frozenset(),
    ) -> list[tuple[ChunkEntry, Blob] | None]:
        """Decode blobs read for ``keys`` and count hits, misses and bytes; indices in
        ``pending`` (still being fetched) answer None without being counted."""
        out: list[tuple[ChunkEntry, Blob] | None] = []
        nbytes = 0
        for key, blob in zip(keys, blobs, strict=True):
            entry = None if blob is None else self.decode_one(key, blob)
            if entry is None or blob is None:
                out.append(None)
                continue
            nbytes += len(memoryview(blob).cast("B"))
            out.append((entry, blob))
        hits = sum(1 for x in out if x is not None)
        self.metrics.add("hits", hits)
        self.metrics.add("misses", len(out) - hits - len(pending))
        self.metrics.add("bytes_read", nbytes)
        self.metrics.get_latency.observe(time.perf_counter() - start)
        return out

    def get_many(self, keys: Sequence[str]) -> list[ChunkEntry | None]:
        return [None if x is None else x[0] for x in self.get_with_blobs(keys)]

    def encode_items(self, entries: Sequence[ChunkEntry]) -> list[BlobItem]:
        """Encode entries with this tier's codec options."""
        return [(e.key, encode(e, self.codec), e.meta.recompute_cost()) for e in entries]

    def put_many(self, entries: Sequence[ChunkEntry]) -> None:
        check_entries(entries)
        self.timed_write(self.encode_items(entries))

    def timed_write(self, items: Sequence[BlobItem]) -> None:
        """``write_blobs`` with its latency recorded."""
        start = time.perf_counter()
        self.write_blobs(items)
        self.metrics.put_latency.observe(time.perf_counter() - start)


class RateLimitedLog:
    """Logs a warning at most once per ``interval_s`` so a full disk or a dead Redis does
    not flood the log; every occurrence is still counted by the caller."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self._interval = interval_s
        self._last = float("-inf")

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            log.warning(msg, *args)
