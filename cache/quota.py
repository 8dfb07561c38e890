"""Per-tenant byte quotas of the memory and disk tiers: whose entry is evicted next.

Keys carry the tenant's salt (``cache.keys``), so no entry is ever shared between tenants and each
entry belongs to exactly one tenant, named by ``ChunkMeta.extra["tenant"]`` (``tenant_tag`` of the
salt; "" for entries written without one). With a quota of ``tenant_bytes`` per tenant, a tier
that needs room evicts from the tenant most over its quota (counting the bytes being written),
within that tenant by its own policy (LRU or craft). A tenant at or under its quota is never
evicted for another tenant's write, so one tenant's flood (or many distinct ``system`` prompts,
which mint new keys) cannot push another tenant below its quota; when no tenant is over its quota
the write is skipped instead. The guarantee holds while (active tenants x quota) fits the tier.
With a quota of 0 every tenant shares one policy: plain LRU/craft over the whole tier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from cache.blob_layout import read_layout
from cache.entry import ChunkMeta
from cache.errors import CorruptEntry
from cache.eviction import EvictionPolicy, LRUPolicy

TENANT_FIELD = "tenant"


def tenant_tag(salt: str) -> str:
    """The tenant name stored in an entry's metadata: a one-way tag of its salt ('' for none)."""
    return (
        hashlib.blake2b(salt.encode(), digest_size=8, person=b"ragblend-tenant").hexdigest() if salt else ""
    )


def meta_tenant(meta: ChunkMeta) -> str:
    """The tenant an entry's metadata names ('' when it names none)."""
    value = meta.extra.get(TENANT_FIELD, "")
    return value if isinstance(value, str) else ""


def blob_tenant(blob: Any) -> str:
    """The tenant of an encoded entry (or a prefix of one holding its metadata); '' if unreadable."""
    try:
        return meta_tenant(read_layout(blob).meta)
    except CorruptEntry:
        return ""


class TenantLedger:
    """Bytes per tenant and the eviction order of one tier. Not thread-safe: the tier locks.

    ``charge`` accounts a key's bytes to its tenant; ``rank`` makes it evictable (the disk tier
    charges before its write and ranks after it, so a file being written is never a victim).
    """

    def __init__(
        self,
        tenant_bytes: int = 0,
        policy: EvictionPolicy | None = None,
        new_policy: Callable[[], EvictionPolicy] | None = None,
    ) -> None:
        if tenant_bytes < 0:
            raise ValueError("tenant_bytes must be >= 0")
        self.tenant_bytes = tenant_bytes
        self._new_policy: Callable[[], EvictionPolicy] = new_policy or (
            type(policy) if policy is not None else LRUPolicy
        )
        self._shared = policy if policy is not None else self._new_policy()
        self._policies: dict[str, EvictionPolicy] = {}
        self._used: dict[str, int] = {}
        self._owner: dict[str, tuple[str, int]] = {}

    def _policy(self, tenant: str) -> EvictionPolicy:
        if not self.tenant_bytes:
            return self._shared
        policy = self._policies.get(tenant)
        if policy is None:
            policy = self._policies[tenant] = self._new_policy()
        return policy

    def charge(self, key: str, tenant: str, nbytes: int) -> None:
        """Account ``nbytes`` of ``key`` to ``tenant`` (replacing what it held before)."""
        self.remove(key)
        self._owner[key] = (tenant, nbytes)
        self._used[tenant] = self._used.get(tenant, 0) + nbytes

    def rank(self, key: str, nbytes: int, cost: float) -> None:
        """Make a charged key evictable by its tenant's policy."""
        owner = self._owner.get(key)
        if owner is not None:
            self._policy(owner[0]).add(key, nbytes, cost)

    def add(self, key: str, tenant: str, nbytes: int, cost: float) -> None:
        """``charge`` then ``rank``."""
        self.charge(key, tenant, nbytes)
        self.rank(key, nbytes, cost)

    def touch(self, key: str) -> None:
        owner = self._owner.get(key)
        if owner is not None:
            self._policy(owner[0]).touch(key)

    def remove(self, key: str) -> int:
        """Forget ``key``; the bytes it held (0 if unknown)."""
        owner = self._owner.pop(key, None)
        if owner is None:
            return 0
        tenant, nbytes = owner
        self._policy(tenant).remove(key)
        left = self._used.get(tenant, 0) - nbytes
        if left > 0:
            self._used[tenant] = left
        else:
            self._used.pop(tenant, None)
            if self.tenant_bytes and tenant in self._policies and not len(self._policies[tenant]):
                del self._policies[tenant]
        return nbytes

    def tenant_of(self, key: str) -> str | None:
        owner = self._owner.get(key)
        return None if owner is None else owner[0]

    def used(self, tenant: str) -> int:
        """Bytes charged to ``tenant``."""
        return self._used.get(tenant, 0)

    def victim(self, tenant: str, incoming: int) -> str | None:
        """The key to evict so that ``tenant`` can write ``incoming`` more bytes, or None when
        nothing may be evicted for it (the write should then be skipped)."""
        if not self.tenant_bytes:
            return self._shared.victim()
        best: str | None = None
        best_excess = 0
        for name, used in self._used.items():
            excess = used + (incoming if name == tenant else 0) - self.tenant_bytes
            policy = self._policies.get(name)
            if excess > best_excess and policy is not None and len(policy):
                best, best_excess = name, excess
        return None if best is None else self._policies[best].victim()

    def __len__(self) -> int:
        return len(self._owner)
