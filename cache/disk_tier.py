"""Local-disk tier: one file per entry, written atomically, read through mmap.

Files live at ``<dir>/<key[:2]>/<key>.kv``. A write goes to a unique temporary file in
``<dir>/.tmp`` and is renamed over the final name with ``os.replace``, so a reader (in
any process) sees either the old whole file or the new whole file. The eviction index
(sizes and access order) is kept in memory and rebuilt from the directory on start,
ordered by modification time, which reads refresh. Several processes may share one
directory: each evicts by its own view, and files another process wrote are adopted
when first read. With a per-tenant quota (``cache.quota``) eviction takes from the tenant most
over its quota; an entry's tenant is read from its metadata (on write, adoption and start).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

from cache.blob_layout import ALIGN
from cache.blob_tier import Blob, BlobItem, BlobTier, RateLimitedLog
from cache.codec import CodecOptions
from cache.eviction import EvictionPolicy
from cache.keys import is_valid_key
from cache.metrics import StoreStats
from cache.quota import TenantLedger, blob_tenant

_SUFFIX = ".kv"
_STALE_TMP_S = 3600.0
_META_PROBE = 64 * ALIGN  # bytes read at start to learn a file's tenant; longer metadata: read whole


class DiskTier(BlobTier):
    """A directory of encoded entries with a byte budget."""

    name = "disk"

    def __init__(
        self,
        directory: str,
        capacity_bytes: int,
        policy: EvictionPolicy | None = None,
        codec: CodecOptions | None = None,
        model_fingerprint: str | None = None,
        *,
        tenant_bytes: int = 0,
        new_policy: Callable[[], EvictionPolicy] | None = None,
    ) -> None:
        super().__init__(codec or CodecOptions(), model_fingerprint)
        self.directory = os.path.abspath(directory)
        self._tmp_dir = os.path.join(self.directory, ".tmp")
        self._capacity = capacity_bytes
        self._ledger = TenantLedger(tenant_bytes, policy, new_policy)
        self._quotas = tenant_bytes > 0
        self._sizes: dict[str, int] = {}
        self._used = 0
        self._lock = threading.Lock()
        self._warn = RateLimitedLog()
        try:
            os.makedirs(self._tmp_dir, exist_ok=True)
        except OSError as exc:
            self.metrics.add("errors")
            self._warn.warning("disk tier %s is not writable (%s); writes will be skipped", directory, exc)
        self._rebuild_index()

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], key + _SUFFIX)

    def _rebuild_index(self) -> None:
        found: list[tuple[float, str, int, str]] = []
        with contextlib.suppress(OSError):
            for sub in os.scandir(self.directory):
                if sub.name == ".tmp":
                    self._clean_tmp()
                    continue
                if not sub.is_dir():
                    continue
                for f in os.scandir(sub.path):
                    key = f.name[: -len(_SUFFIX)]
                    if f.name.endswith(_SUFFIX) and is_valid_key(key) and key.startswith(sub.name):
                        st = f.stat()
                        found.append((st.st_mtime, key, st.st_size, self._file_tenant(f.path)))
        with self._lock:
            for _, key, size, tenant in sorted(found):
                self._sizes[key] = size
                self._used += size
                self._ledger.add(key, tenant, size, float(size))
            self._evict_locked("", 0)

    def _file_tenant(self, path: str) -> str:
        if not self._quotas:
            return ""
        with contextlib.suppress(OSError), open(path, "rb") as f:
            head = f.read(_META_PROBE)
            tenant = blob_tenant(head)
            if not tenant and len(head) == _META_PROBE:
                f.seek(0)
                tenant = blob_tenant(f.read())
            return tenant
        return ""

    def _clean_tmp(self) -> None:
        now = time.time()
        for f in os.scandir(self._tmp_dir):
            with contextlib.suppress(OSError):
                if now - f.stat().st_mtime > _STALE_TMP_S:
                    os.unlink(f.path)

    def _evict_locked(self, tenant: str, incoming: int) -> bool:
        """Make room for ``incoming`` bytes of ``tenant``; False if the quotas forbid it."""
        while self._used + incoming > self._capacity:
            victim = self._ledger.victim(tenant, incoming)
            if victim is None:
                return False
            self._forget_locked(victim)
            with contextlib.suppress(OSError):
                os.unlink(self._path(victim))
            self.metrics.add("evictions")
        return True

    def _forget_locked(self, key: str) -> None:
        self._used -= self._sizes.pop(key, 0)
        self._ledger.remove(key)

    def read_blobs(self, keys: Sequence[str]) -> list[Blob | None]:
        return [self._read(key) for key in keys]

    def _read(self, key: str) -> Blob | None:
        if not is_valid_key(key):
            return None
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            with self._lock:
                self._forget_locked(key)
            return None
        except OSError as exc:
            self.metrics.add("errors")
            self._warn.warning("disk tier: cannot read %s: %s", path, exc)
            return None
        try:
            size = os.fstat(fd).st_size
            # A private (copy-on-write) map gives torch a writable buffer without a copy;
            # files are only ever replaced, never truncated in place, so the map stays valid.
            blob: Blob = mmap.mmap(fd, size, access=mmap.ACCESS_COPY) if size else b""
        except (OSError, ValueError) as exc:
            self.metrics.add("errors")
            self._warn.warning("disk tier: cannot map %s: %s", path, exc)
            return None
        finally:
            os.close(fd)
        tenant = blob_tenant(blob) if self._quotas and key not in self._sizes else ""
        with self._lock:
            if key in self._sizes:
                self._ledger.touch(key)
            else:
                self._sizes[key] = size
                self._used += size
                self._ledger.add(key, tenant, size, float(size))
        with contextlib.suppress(OSError):
            os.utime(path)
        return blob

    def write_blobs(self, items: Sequence[BlobItem]) -> None:
        for key, blob, cost in items:
            self._write(key, blob, cost)

    def _write(self, key: str, blob: Blob, cost: float) -> None:
        if not is_valid_key(key):
            raise ValueError(f"invalid chunk key {key!r}")
        size = len(memoryview(blob).cast("B"))
        if size > self._capacity:
            self.metrics.add("skipped_writes")
            return
        tenant = blob_tenant(blob) if self._quotas else ""
        with self._lock:
            self._forget_locked(key)
            if not self._evict_locked(tenant, size):
                self.metrics.add("skipped_writes")  # only tenants within their quota are left
                return
            # Reserve the space before writing so concurrent writers respect the budget.
            self._sizes[key] = size
            self._used += size
            self._ledger.charge(key, tenant, size)
        tmp = None
        try:
            os.makedirs(os.path.dirname(self._path(key)), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=key[:16] + ".", suffix=".tmp", dir=self._tmp_dir)
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, self._path(key))
            tmp = None
        except OSError as exc:
            with self._lock:
                self._forget_locked(key)
            self.metrics.add("errors")
            self.metrics.add("skipped_writes")
            self._warn.warning("disk tier: write skipped (%s); reads continue", exc)
            return
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        with self._lock:
            if key in self._sizes:
                self._ledger.rank(key, size, cost)
        self.metrics.add("writes")
        self.metrics.add("bytes_written", size)

    def drop(self, key: str) -> None:
        self.delete(key)

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        with self._lock:
            known = [key in self._sizes for key in keys]
        return [
            k or (is_valid_key(key) and os.path.exists(self._path(key)))
            for k, key in zip(known, keys, strict=True)
        ]

    def delete(self, key: str) -> None:
        if not is_valid_key(key):
            return
        with self._lock:
            self._forget_locked(key)
        with contextlib.suppress(OSError):
            os.unlink(self._path(key))

    def tenant_bytes_used(self, tenant: str) -> int:
        """Bytes this tier holds for ``tenant`` (``cache.quota.tenant_tag`` of its salt)."""
        with self._lock:
            return self._ledger.used(tenant)

    def stats(self) -> StoreStats:
        with self._lock:
            entries, used = len(self._sizes), self._used
        return StoreStats(tiers=(self.metrics.snapshot(entries, used, self._capacity),))
