"""Prometheus export of ``ChunkStore.stats()``: one collector, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cache.metrics import HistogramSnapshot, StoreStats
from cache.store import ChunkStore

_COUNTERS = (
    ("hits", "Chunk-KV lookups answered by the tier"),
    ("misses", "Chunk-KV lookups the tier could not answer"),
    ("bytes_read", "Bytes of entries read from the tier"),
    ("bytes_written", "Bytes of entries written to the tier"),
    ("writes", "Entries written to the tier"),
    ("evictions", "Entries evicted from the tier to meet its budget"),
    ("errors", "Backend errors of the tier (each turned into a miss or skipped write)"),
    ("corrupt", "Stored entries found truncated, corrupt or foreign, and dropped"),
    (
        "unauthenticated",
        "Stored entries without a valid tag of this server's key (forged or foreign), dropped",
    ),
    ("skipped_writes", "Entries not written (too large, backend down, disk full)"),
)


def _buckets(h: HistogramSnapshot) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip(h.buckets, h.counts, strict=False):
        running += count
        out.append((repr(bound), float(running)))
    out.append(("+Inf", float(h.count)))
    return out


class StoreCollector(Collector):
    """Turns a store's stats snapshot into metric families labelled by tier."""

    def __init__(self, store: ChunkStore, prefix: str = "ragblend_kv") -> None:
        self.store = store
        self.prefix = prefix

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: families are only known at collect time

    def collect(self) -> Iterator[Metric]:
        stats: StoreStats = self.store.stats()
        p = self.prefix
        for field, doc in _COUNTERS:
            family = CounterMetricFamily(f"{p}_{field}", doc, labels=["tier"])
            for t in stats.tiers:
                family.add_metric([t.name], float(getattr(t, field)))
            yield family
        gauges = (
            ("entries", "Entries held by the tier (-1: unknown)", "entries"),
            ("bytes_used", "Bytes held by the tier (-1: unknown)", "bytes_used"),
            ("capacity_bytes", "Byte budget of the tier (0: none set)", "capacity_bytes"),
        )
        for name, doc, attr in gauges:
            g = GaugeMetricFamily(f"{p}_{name}", doc, labels=["tier"])
            for t in stats.tiers:
                g.add_metric([t.name], float(getattr(t, attr)))
            yield g
        for op in ("get", "put"):
            hist = HistogramMetricFamily(
                f"{p}_{op}_latency_seconds", f"Latency of one batched {op} on the tier", labels=["tier"]
            )
            for t in stats.tiers:
                snap: HistogramSnapshot = getattr(t, f"{op}_latency")
                hist.add_metric([t.name], _buckets(snap), snap.total)
            yield hist
        yield GaugeMetricFamily(f"{p}_pending_writes", "Background writes queued", value=stats.pending_writes)
        yield CounterMetricFamily(
            f"{p}_dropped_writes",
            "Background writes dropped because the queue was full",
            value=stats.dropped_writes,
        )


def register_store_metrics(
    store: ChunkStore, registry: CollectorRegistry, prefix: str = "ragblend_kv"
) -> StoreCollector:
    """Register a collector for ``store`` on ``registry`` and return it (to unregister)."""
    collector = StoreCollector(store, prefix)
    registry.register(collector)
    return collector
