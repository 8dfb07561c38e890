"""The contract every chunk-KV store honours: each tier and the tiered store alike.

Rules for implementations:

- Batched calls are the unit of work: ``get_many`` and ``contains_many`` answer one list
  item per key, in order (duplicates allowed), and serve a batch with one round trip per
  tier, never one per key.
- A miss is a normal answer, never an exception. A store that cannot reach its backend,
  or finds stored bytes truncated, corrupt, of another codec version, model or key, answers
  a miss, drops what it found when it can, and counts it (``errors`` / ``corrupt``).
- ``put_many`` never raises for backend trouble either: a write that cannot be done is
  skipped and counted. It raises ValueError only for entries that are malformed (tensors
  disagreeing with their metadata) or keys that ``cache.keys.is_valid_key`` rejects.
- Returned entries are shared and read-only: callers clone before modifying tensors.
- An entry is only ever returned under the key it was stored with; keys carry the tenant
  salt, so an entry of one tenant is never returned for another tenant's key.
- Every method is thread-safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from cache.entry import ChunkEntry
from cache.keys import is_valid_key
from cache.metrics import StoreStats


class ChunkStore(ABC):
    """A key -> ChunkEntry store with batched reads and writes."""

    @abstractmethod
    def get_many(self, keys: Sequence[str]) -> list[ChunkEntry | None]:
        """One entry or None per key, in order."""

    @abstractmethod
    def put_many(self, entries: Sequence[ChunkEntry]) -> None:
        """Store entries (replacing any under the same key); may evict others."""

    @abstractmethod
    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        """Whether each key is probably present, without transferring the entries.

        A True may still turn into a miss on ``get_many`` (evicted or found corrupt since).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    @abstractmethod
    def stats(self) -> StoreStats:
        """A consistent-enough snapshot of the counters (each counter read atomically)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most tiers hold nothing to close
        """Release connections, threads and files; the store must not be used afterwards."""

    def get(self, key: str) -> ChunkEntry | None:
        """``get_many([key])[0]``."""
        return self.get_many([key])[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def check_keys(keys: Sequence[str]) -> None:
    """ValueError unless every key is one ``chunk_key`` could have made."""
    for key in keys:
        if not is_valid_key(key):
            raise ValueError(f"invalid chunk key {key!r}")


def check_entries(entries: Sequence[ChunkEntry]) -> None:
    """ValueError for a malformed entry or key."""
    for entry in entries:
        if not is_valid_key(entry.key):
            raise ValueError(f"invalid chunk key {entry.key!r}")
        entry.validate()
