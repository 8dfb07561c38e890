"""Redis tier: pipelined batched reads and writes of entries split into parts.

A batch costs one pipeline for the main keys and, for entries larger than
``part_bytes``, one more for their parts (``cache.redis_layout``). Parts are written
before their manifest in the same pipeline and are named by a content-derived write id,
so a reader sees a whole old entry, a whole new one, or (parts of a replaced entry
already deleted) a miss, never a mix; the codec's checksum is the last line of defence.
Every failure is a miss or a skipped write plus an ``errors`` count (``cache.redis_conn``).
With a per-tenant quota, writes are charged to their tenant in the same pipeline and the tenant
most over its quota loses its oldest entries first (``cache.redis_quota``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cache import resp_reader
from cache.blob_tier import Blob, BlobItem, BlobTier
from cache.codec import CodecOptions
from cache.keys import is_valid_key
from cache.metrics import StoreStats
from cache.quota import blob_tenant
from cache.redis_conn import RedisConnection, is_cluster_url
from cache.redis_layout import (
    Manifest,
    assemble,
    is_manifest,
    main_key,
    make_manifest,
    parse_manifest,
    part_count,
    part_key,
    write_id,
)
from cache.redis_quota import RedisQuotas

__all__ = ["RedisTier", "is_cluster_url", "parse_manifest"]

_IN_FLIGHT_BYTES = 4 << 20
_PART_TTL_GRACE_S = 60  # parts outlive their manifest, never the other way round
# With quotas, the tier keeps the entry bytes it charged below this share of maxmemory, so that
# Redis' own (tenant-blind) LRU never has to act: the allocator rounds a 256 KiB part up to its
# next size class (+25%), and keys, the bookkeeping and client buffers need the rest.
QUOTA_FILL = 0.6


class RedisTier(BlobTier):
    """Chunk entries in a Redis server or Cluster, shared by every replica."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        ttl_s: int | None = None,
        part_bytes: int = 256 << 10,
        timeout_s: float = 0.5,
        backoff_s: float = 1.0,
        max_bytes: int = 0,
        namespace: str = "rbkv",
        codec: CodecOptions | None = None,
        model_fingerprint: str | None = None,
        tenant_bytes: int = 0,
    ) -> None:
        super().__init__(codec or CodecOptions(), model_fingerprint)
        if tenant_bytes and not max_bytes:
            raise ValueError("per-tenant Redis quotas need the tier's budget (max_bytes > 0)")
        self.quotas = (
            RedisQuotas(namespace, tenant_bytes, int(max_bytes * QUOTA_FILL)) if tenant_bytes else None
        )
        self.conn = RedisConnection(
            url,
            cluster=cluster,
            timeout_s=timeout_s,
            backoff_s=backoff_s,
            max_bytes=max_bytes,
            on_error=lambda: self.metrics.add("errors"),
        )
        self.cluster = self.conn.cluster
        fast = not self.cluster and resp_reader.supports(self.conn.url)
        self._fast = resp_reader.RespReader(self.conn.url, timeout_s) if fast else None
        self.fast_reader = self._fast
        # Requests in flight: about _IN_FLIGHT_BYTES of parts (main keys hold at most a part).
        self.window = max(2, _IN_FLIGHT_BYTES // part_bytes)
        self.ttl_s = ttl_s
        self.part_bytes = part_bytes
        self.max_bytes = max_bytes
        self.namespace = namespace

    def ping(self) -> bool:
        """Whether Redis answers now (for health checks)."""
        return self.conn.ping()

    def _get_values(self, client: Any, names: list[str]) -> list[Any]:
        if self._fast is not None:
            return list(self._fast.get_many(names, self.ttl_s, self.window))
        pipe = client.pipeline(transaction=False)
        for name in names:
            if self.ttl_s:
                pipe.getex(name, ex=self.ttl_s)  # a hit keeps the entry alive
            else:
                pipe.get(name)
        return list(pipe.execute())

    def failed(self, exc: BaseException, client: Any) -> None:
        """Count a failure, reset connections and back off (see ``cache.redis_conn``)."""
        if self._fast is not None:
            self._fast.reset()
        self.conn.failed(exc, client)

    @property
    def can_stream(self) -> bool:
        """Whether ``cache.redis_stream`` can stream from this tier (plain server)."""
        return self._fast is not None

    def read_main(self, keys: Sequence[str]) -> tuple[list[Blob | None], dict[int, Manifest]]:
        """First round trip of a read: whole entries stored in one value, and manifests of
        split entries by index. Failures answer nothing found."""
        out: list[Blob | None] = [None] * len(keys)
        manifests: dict[int, Manifest] = {}
        client = self.conn.client()
        if client is None or not keys:
            return out, manifests
        try:
            for i, value in enumerate(self._get_values(client, [main_key(self.namespace, k) for k in keys])):
                manifest = parse_manifest(value) if is_manifest(value) else None
                if manifest is not None:
                    manifests[i] = manifest
                else:
                    out[i] = value  # an unreadable manifest is rejected (and dropped) by the codec
        except Exception as exc:
            self.failed(exc, client)
            return [None] * len(keys), {}
        return out, manifests

    def read_blobs(self, keys: Sequence[str]) -> list[Blob | None]:
        out, manifests = self.read_main(keys)
        if not manifests:
            return out
        client = self.conn.client()
        if client is None:
            return [None] * len(keys)
        try:
            self._read_parts(client, keys, sorted(manifests.items()), out)
        except Exception as exc:
            self.failed(exc, client)
            return [None] * len(keys)
        return out

    def _read_parts(
        self, client: Any, keys: Sequence[str], wanted: list[tuple[int, Manifest]], out: list[Blob | None]
    ) -> None:
        ns = self.namespace
        names = [part_key(ns, keys[i], m.write_id, p) for i, m in wanted for p in range(m.parts)]
        if self._fast is None:
            values = iter(self._get_values(client, names))
            for i, m in wanted:
                out[i] = assemble([next(values) for _ in range(m.parts)], m.total)
            return
        # Each part lands directly at its place in the entry's buffer.
        buffers = [resp_reader.alloc(m.total) for _, m in wanted]
        targets = [buf[a:b] for buf, (_, m) in zip(buffers, wanted, strict=True) for a, b in m.spans()]
        filled = iter(self._fast.get_into(names, targets, self.ttl_s, window=self.window))
        for buf, (i, m) in zip(buffers, wanted, strict=True):
            complete = all([next(filled) for _ in range(m.parts)])
            out[i] = buf if complete else None  # a part expired, was evicted or replaced: a miss

    def write_blobs(self, items: Sequence[BlobItem]) -> None:
        for key, _, _ in items:
            if not is_valid_key(key):
                raise ValueError(f"invalid chunk key {key!r}")
        client = self.conn.client()
        if client is None:
            self.metrics.add("skipped_writes", len(items))
            return
        ns, ex, size = self.namespace, self.ttl_s, self.part_bytes
        part_ex = ex + _PART_TTL_GRACE_S if ex else None
        charges: dict[str, list[tuple[str, int]]] = {}
        if self.quotas is not None:
            for key, blob, _ in items:
                charges.setdefault(blob_tenant(blob), []).append((key, len(memoryview(blob).cast("B"))))
            try:
                incoming = {t: sum(n for _, n in kn) for t, kn in charges.items()}
                fits, evicted = self.quotas.make_room(
                    client, lambda k: self._drop_entries(client, k), incoming
                )
            except Exception as exc:
                self.failed(exc, client)
                self.metrics.add("skipped_writes", len(items))
                return
            self.metrics.add("evictions", evicted)
            if not fits:  # only tenants within their quota are left: none of them may lose
                self.metrics.add("skipped_writes", len(items))
                return
        written = 0
        try:
            pipe = client.pipeline(transaction=False)
            for key, blob, _ in items:
                mv = memoryview(blob).cast("B")
                written += mv.nbytes
                parts = part_count(mv.nbytes, size)
                if parts == 1:
                    pipe.set(main_key(ns, key), mv, ex=ex, get=True)
                    continue
                wid = write_id(mv)
                for p in range(parts):
                    pipe.set(part_key(ns, key, wid, p), mv[p * size : (p + 1) * size], ex=part_ex)
                pipe.set(main_key(ns, key), make_manifest(mv.nbytes, size, wid), ex=ex, get=True)
            if self.quotas is not None:
                self.quotas.charge(pipe, charges)
            results = pipe.execute()
            self._delete_replaced(client, items, results)
        except Exception as exc:
            self.failed(exc, client)
            self.metrics.add("skipped_writes", len(items))
            return
        self.metrics.add("writes", len(items))
        self.metrics.add("bytes_written", written)

    def _delete_replaced(self, client: Any, items: Sequence[BlobItem], results: list[Any]) -> None:
        # SET ... GET answered each main key's previous value (the last result of its
        # group); the parts of a manifest that was replaced are garbage now.
        stale: list[str] = []
        pos = 0
        for key, blob, _ in items:
            mv = memoryview(blob).cast("B")
            parts = part_count(mv.nbytes, self.part_bytes)
            pos += parts if parts == 1 else parts + 1
            old = results[pos - 1]
            manifest = parse_manifest(old)
            new_wid = write_id(mv) if parts > 1 else None
            if manifest is not None and manifest.write_id != new_wid:
                wid = manifest.write_id
                stale.extend(part_key(self.namespace, key, wid, p) for p in range(manifest.parts))
        if stale:
            pipe = client.pipeline(transaction=False)
            for name in stale:
                pipe.delete(name)
            pipe.execute()

    def _drop_entries(self, client: Any, keys: Sequence[str]) -> None:
        """Delete entries with their parts: one pipeline for the main keys, one for the parts."""
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.getdel(main_key(self.namespace, key))
        stale: list[str] = []
        for key, old in zip(keys, pipe.execute(), strict=True):
            manifest = parse_manifest(old)
            if manifest is not None:
                stale.extend(
                    part_key(self.namespace, key, manifest.write_id, p) for p in range(manifest.parts)
                )
        if stale:
            pipe = client.pipeline(transaction=False)
            for name in stale:
                pipe.delete(name)
            pipe.execute()

    def tenant_bytes_used(self, tenant: str) -> int:
        """Bytes charged to ``tenant`` in this namespace (0 without quotas or on a fault)."""
        client = self.conn.client()
        if client is None or self.quotas is None:
            return 0
        try:
            return self.quotas.used(client).get(tenant, 0)
        except Exception as exc:
            self.failed(exc, client)
            return 0

    def drop(self, key: str) -> None:
        self.delete(key)

    def delete(self, key: str) -> None:
        client = self.conn.client()
        if client is None:
            return
        try:
            old = client.getdel(main_key(self.namespace, key))
            manifest = parse_manifest(old)
            if manifest is not None:
                pipe = client.pipeline(transaction=False)
                for p in range(manifest.parts):
                    pipe.delete(part_key(self.namespace, key, manifest.write_id, p))
                pipe.execute()
        except Exception as exc:
            self.failed(exc, client)

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        client = self.conn.client()
        if client is None or not keys:
            return [False] * len(keys)
        try:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.exists(main_key(self.namespace, key))
            return [bool(x) for x in pipe.execute()]
        except Exception as exc:
            self.failed(exc, client)
            return [False] * len(keys)

    def stats(self) -> StoreStats:
        return StoreStats(tiers=(self.metrics.snapshot(-1, -1, self.max_bytes),))

    def close(self) -> None:
        self.conn.close()
        if self._fast is not None:
            self._fast.reset()
