"""Counters and latency histograms of each tier, and the typed snapshots ``stats()`` returns."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(frozen=True)
class HistogramSnapshot:
    """Cumulative-free bucket counts: ``counts[i]`` observations <= ``buckets[i]`` and >
    ``buckets[i-1]``; the last count is the overflow (+Inf) bucket."""

    buckets: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int


@dataclass(frozen=True)
class TierStats:
    """One tier's counters since start. ``entries``/``bytes_used`` are -1 when unknown
    (a shared Redis holds entries that this process never saw)."""

    name: str
    hits: int
    misses: int
    bytes_read: int
    bytes_written: int
    writes: int
    evictions: int
    errors: int
    corrupt: int
    unauthenticated: int
    skipped_writes: int
    entries: int
    bytes_used: int
    capacity_bytes: int
    get_latency: HistogramSnapshot
    put_latency: HistogramSnapshot


@dataclass(frozen=True)
class StoreStats:
    """Snapshot of a store: its tiers (upper first) and its background writer."""

    tiers: tuple[TierStats, ...]
    pending_writes: int = 0
    dropped_writes: int = 0
    layer_fetches: int = 0

    def tier(self, name: str) -> TierStats:
        """The stats of the tier called ``name``; KeyError if absent."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def hits(self) -> int:
        """Hits over all tiers."""
        return sum(t.hits for t in self.tiers)


class Histogram:
    """Thread-safe fixed-bucket histogram."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self._buckets = buckets
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self._buckets, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            return HistogramSnapshot(self._buckets, tuple(self._counts), self._sum, sum(self._counts))


class TierMetrics:
    """Mutable counters of one tier; ``snapshot`` freezes them into a TierStats."""

    COUNTERS = (
        "hits",
        "misses",
        "bytes_read",
        "bytes_written",
        "writes",
        "evictions",
        "errors",
        "corrupt",
        "unauthenticated",
        "skipped_writes",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self.COUNTERS, 0)
        self.get_latency = Histogram()
        self.put_latency = Histogram()

    def add(self, counter: str, amount: int = 1) -> None:
        """Increase ``counter`` (one of ``COUNTERS``) by ``amount``."""
        with self._lock:
            self._values[counter] += amount

    def value(self, counter: str) -> int:
        with self._lock:
            return self._values[counter]

    def snapshot(self, entries: int, bytes_used: int, capacity_bytes: int) -> TierStats:
        with self._lock:
            values = dict(self._values)
        return TierStats(
            name=self.name,
            entries=entries,
            bytes_used=bytes_used,
            capacity_bytes=capacity_bytes,
            get_latency=self.get_latency.snapshot(),
            put_latency=self.put_latency.snapshot(),
            **values,
        )
