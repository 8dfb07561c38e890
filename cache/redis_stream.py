"""Streaming split entries out of Redis layer by layer, into a LayeredFetch.

Part 0 of every entry (it holds the header and metadata) comes first; the other parts
follow in the order of the first layer they carry, across all entries, so layer 0 of the
whole batch is in after a small fraction of the transfer. Each layer is verified against
its own CRC as soon as its bytes are in and released to the fetch. Entries that are not
raw (compressed or quantised) are released whole once complete and verified.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from cache.blob_layout import BlobLayout, read_layout
from cache.codec import decode, entry_view
from cache.entry import ChunkEntry
from cache.errors import CorruptEntry
from cache.layered import LayeredFetch
from cache.redis_layout import Manifest, part_key
from cache.redis_tier import RedisTier
from cache.resp_reader import alloc

OnComplete = Callable[[int, ChunkEntry, memoryview], None]


class _Entry:
    """Progress of one streamed entry."""

    def __init__(self, index: int, key: str, manifest: Manifest) -> None:
        self.index = index
        self.key = key
        self.manifest = manifest
        self.spans = manifest.spans()
        self.buf = alloc(manifest.total)
        self.received = [False] * manifest.parts
        self.layout: BlobLayout | None = None
        self.needs: list[list[int]] = []  # parts holding each layer
        self.ranks: dict[int, int] = {}  # part -> first layer it carries
        self.next_layer = 0
        self.ok = True

    def plan(self, layout: BlobLayout) -> None:
        """Work out which parts each layer needs and the first layer of each part."""
        self.layout = layout
        size = self.manifest.part_size
        self.needs = []
        self.ranks = {}
        for layer in range(layout.meta.num_layers):
            parts = [p for a, b in layout.layer_spans(layer) for p in range(a // size, (b - 1) // size + 1)]
            self.needs.append(parts)
            for p in parts:
                self.ranks.setdefault(p, layer)

    def rank(self, part: int) -> int:
        return self.ranks.get(part, -1)  # whole-entry mode: fetch early


def stream_parts(
    tier: RedisTier,
    keys: Sequence[str],
    manifests: dict[int, Manifest],
    fetch: LayeredFetch,
    slot: Callable[[int], int],
    on_complete: OnComplete,
) -> None:
    """Fetch the parts of the split entries ``manifests`` (indices into ``keys``) into
    ``fetch`` (key index ``slot(i)``), calling ``on_complete`` for every entry that ends
    whole and verified. Never raises: failures become misses (or ``FetchFailed``)."""
    reader = tier.fast_reader
    assert reader is not None
    start = time.perf_counter()
    entries = [_Entry(i, keys[i], m) for i, m in sorted(manifests.items())]
    client = tier.conn.client()
    if client is None:
        for e in entries:
            fetch.miss(slot(e.index))
        return

    def fail(e: _Entry, exc: CorruptEntry | None = None) -> None:
        if e.ok:
            e.ok = False
            fetch.miss(slot(e.index))
            if exc is not None:
                tier.corrupt(e.key, exc)

    def check_layers(e: _Entry) -> None:
        if not e.ok or e.layout is None or not e.layout.streamable:
            return
        start_layer = e.next_layer
        while e.next_layer < len(e.needs) and all(e.received[p] for p in e.needs[e.next_layer]):
            if not e.layout.layer_ok(e.buf, e.next_layer):
                reason = "checksum" if e.layout.signer is None else "mac"  # a bad tag or checksum
                fail(e, CorruptEntry(reason, f"layer {e.next_layer}"))
                return
            e.next_layer += 1
        if e.next_layer > start_layer:
            fetch.advance(slot(e.index), e.next_layer)

    def names_targets(jobs: list[tuple[_Entry, int]]) -> tuple[list[str], list[memoryview]]:
        names = [part_key(tier.namespace, e.key, e.manifest.write_id, p) for e, p in jobs]
        targets = [e.buf[e.spans[p][0] : e.spans[p][1]] for e, p in jobs]
        return names, targets

    try:
        names, targets = names_targets([(e, 0) for e in entries])
        for e, got in zip(
            entries, reader.get_into(names, targets, tier.ttl_s, window=tier.window), strict=True
        ):
            e.received[0] = got
            if not got:
                fail(e)
                continue
            try:
                e.layout = read_layout(e.buf[: e.spans[0][1]], e.key, tier.model_fingerprint, tier.codec.auth)
            except CorruptEntry as exc:
                if exc.reason != "truncated":  # metadata longer than one part: whole-entry mode
                    fail(e, exc)
                continue
            if e.layout.total != e.manifest.total:
                fail(e, CorruptEntry("truncated", "manifest and header disagree"))
            elif e.layout.streamable:
                e.plan(e.layout)
                fetch.set_entry(slot(e.index), entry_view(e.layout, e.buf), 0)
                check_layers(e)
        jobs = sorted(
            ((e, p) for e in entries if e.ok for p in range(1, e.manifest.parts)),
            key=lambda job: (job[0].rank(job[1]), job[1], job[0].index),
        )

        def on_reply(j: int, got: bool) -> None:
            e, p = jobs[j]
            if not got:
                fail(e)
            elif e.ok:
                e.received[p] = True
                check_layers(e)

        names, targets = names_targets(jobs)
        reader.get_into(names, targets, tier.ttl_s, on_reply, window=tier.window)
    except Exception as exc:
        tier.failed(exc, client)
        for e in entries:
            fail(e)
    hits = nbytes = 0
    for e in entries:
        if e.ok and e.layout is not None and e.layout.streamable:
            if e.next_layer < e.layout.meta.num_layers:
                fail(e)
                continue
            entry = entry_view(e.layout, e.buf)  # every layer verified: the whole payload is
        elif e.ok:
            try:
                entry = decode(e.buf, e.key, tier.model_fingerprint, tier.codec.auth)
            except CorruptEntry as exc:
                fail(e, exc)
                continue
            fetch.set_entry(slot(e.index), entry)
        else:
            continue
        hits += 1
        nbytes += e.manifest.total
        on_complete(e.index, entry, e.buf)
    tier.metrics.add("hits", hits)
    tier.metrics.add("misses", len(entries) - hits)
    tier.metrics.add("bytes_read", nbytes)
    tier.metrics.get_latency.observe(time.perf_counter() - start)
