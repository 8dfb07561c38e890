"""Per-tenant byte quotas of the Redis tier, kept in Redis itself so every replica sees them.

Every replica writing to the tier charges each entry to its tenant (``cache.quota``) in the same
pipeline as the entry's write, with a script that keeps, all in one Cluster slot (hash tag
``{quota}``):

- ``<ns>:{quota}:used``: a hash tenant -> bytes charged;
- ``<ns>:{quota}:age:<tenant>``: a sorted set of the tenant's keys by write order (a shared
  counter ``<ns>:{quota}:clock``), oldest first;
- ``<ns>:{quota}:size:<tenant>``: a hash key -> bytes.

Before a write, while the charged bytes plus the batch's exceed the tier's budget, the tenant
most over its quota (counting what it is about to write) loses its oldest entries: deleted with
their parts, then uncharged by a script that subtracts only what it still finds, so replicas
evicting at once never uncharge twice. A tenant within its quota is never evicted for another
one's write: when only such tenants are left, the batch is skipped. Entries that expired or were
deleted otherwise stay charged until they come up as victims (deleting them again is harmless):
the accounting can only over-count a tenant, which costs it its oldest entries early, never
another tenant's.
"""

from __future__ import annotations

from typing import Any

_CHARGE = """
local delta = 0
for i = 2, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0')
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[i])
  delta = delta + tonumber(ARGV[i + 1]) - old
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], delta)
"""

_UNCHARGE = """
local freed = 0
for i = 2, #ARGV do
  local size = redis.call('HGET', KEYS[3], ARGV[i])
  if size then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    freed = freed + tonumber(size)
  end
end
if freed > 0 and redis.call('HINCRBY', KEYS[1], ARGV[1], -freed) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return freed
"""

_BATCH = 64  # victims looked at per round trip
_MAX_ROUNDS = 64  # per write batch; the next write goes on where this one stopped


class RedisQuotas:
    """Names and scripts of the quota bookkeeping of one namespace."""

    def __init__(self, namespace: str, tenant_bytes: int, capacity_bytes: int) -> None:
        self.tenant_bytes = tenant_bytes
        self.capacity = capacity_bytes
        self._prefix = f"{namespace}:{{quota}}"

    @property
    def used_key(self) -> str:
        return f"{self._prefix}:used"

    def _tenant_keys(self, tenant: str) -> list[str]:
        return [self.used_key, f"{self._prefix}:age:{tenant}", f"{self._prefix}:size:{tenant}"]

    def charge(self, pipe: Any, charges: dict[str, list[tuple[str, int]]]) -> None:
        """Queue on ``pipe`` the charge of each tenant's written (key, bytes)."""
        for tenant, items in charges.items():
            args: list[str | int] = [tenant]
            for key, nbytes in items:
                args += [key, nbytes]
            keys = [*self._tenant_keys(tenant), f"{self._prefix}:clock"]
            pipe.execute_command("EVAL", _CHARGE, len(keys), *keys, *args)  # a Cluster pipeline has no .eval

    def used(self, client: Any) -> dict[str, int]:
        """Bytes charged per tenant."""
        raw = client.hgetall(self.used_key) or {}
        return {_text(t): int(n) for t, n in raw.items()}

    def victims(
        self, client: Any, used: dict[str, int], incoming: dict[str, int]
    ) -> tuple[str, list[tuple[str, int]]] | None:
        """The tenant most over its quota (counting ``incoming`` bytes) and its oldest (key, bytes)
        to drop, or None when the budget is met or every tenant is within its quota."""
        total = sum(used.values()) + sum(incoming.values())
        if total <= self.capacity:
            return None
        over = {t: n + incoming.get(t, 0) - self.tenant_bytes for t, n in used.items() if n > 0}
        if not over:
            return None
        tenant, excess = max(over.items(), key=lambda kv: kv[1])
        if excess <= 0:
            return None
        _, age, size = self._tenant_keys(tenant)
        keys = [_text(k) for k in client.zrange(age, 0, _BATCH - 1)]
        if not keys:
            return None
        sizes = client.hmget(size, keys)
        need = min(excess, total - self.capacity)
        out: list[tuple[str, int]] = []
        for key, nbytes in zip(keys, sizes, strict=True):
            if need <= 0:
                break
            n = int(nbytes or 0)
            out.append((key, n))
            need -= n
        return tenant, out

    def uncharge(self, client: Any, tenant: str, keys: list[str]) -> int:
        """Forget ``keys`` of ``tenant``; the bytes actually uncharged."""
        tk = self._tenant_keys(tenant)
        return int(client.eval(_UNCHARGE, len(tk), *tk, tenant, *keys))

    def make_room(self, client: Any, drop: Any, incoming: dict[str, int]) -> tuple[bool, int]:
        """Evict until ``incoming`` bytes per tenant fit the budget; ``drop(keys)`` deletes
        entries. Returns whether they fit, and the entries evicted."""
        evicted = 0
        for _ in range(_MAX_ROUNDS):
            used = self.used(client)
            found = self.victims(client, used, incoming)
            if found is None:
                return sum(used.values()) + sum(incoming.values()) <= self.capacity, evicted
            tenant, victims = found
            keys = [k for k, _ in victims]
            drop(keys)
            self.uncharge(client, tenant, keys)
            evicted += len(keys)
        return False, evicted


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
