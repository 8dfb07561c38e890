"""Per-key limits that hold across gateway replicas: the counters live in Redis (RAGBLEND_REDIS_URL).

Eight replicas that each count alone give a key eight times its limit; these count in one place.
Each check is one Lua script, so concurrent requests on different replicas cannot both take the last
token or the last stream slot, and time comes from Redis's clock, so replicas' clocks need not agree.

- Rate: the same token bucket as rate_limit.py, stored as a hash per key (expires once full again).
- Streams: a sorted set per key of open streams, each scored with the time it stops counting. A
  stream releases its slot when it ends; a replica that dies without releasing leaves slots that
  lapse after the longest a request may run (`request_timeout_s`) plus a margin.

Redis trouble never fails a request: while Redis is unreachable, each replica counts locally (the
limits then hold per replica, as without Redis), and the connection backs off (cache/redis_conn.py).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import redis

from cache.redis_conn import RedisConnection
from server.api_keys import Principal
from server.errors import ApiError
from server.rate_limit import RateLimiter
from server.stream_limit import StreamLimiter, StreamSlot

PREFIX = "ragblend:limits"

_BUCKET = """
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(b[1]) or capacity
local updated = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return tostring(wait)
"""

_OPEN_STREAM = """
local limit, ttl = tonumber(ARGV[1]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(ttl) + 1)
return 1
"""

_COUNT_STREAMS = """
local t = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1e6, '+inf')
"""


def _key(kind: str, key_name: str) -> str:
    return f"{PREFIX}:{kind}:{{{key_name}}}"


class SharedRateLimiter(RateLimiter):
    def __init__(self, connection: RedisConnection) -> None:
        super().__init__()
        self._redis = connection

    def check(self, key_name: str, requests_per_minute: float | None) -> int:
        if requests_per_minute is None:
            return 0
        client = self._redis.client()
        if client is None:
            return super().check(key_name, requests_per_minute)
        capacity, rate = max(1.0, requests_per_minute), requests_per_minute / 60.0
        try:
            wait = float(client.eval(_BUCKET, 1, _key("rate", key_name), capacity, rate))
        except redis.RedisError as exc:
            self._redis.failed(exc, client)
            return super().check(key_name, requests_per_minute)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))


class _SharedSlot(StreamSlot):
    def __init__(self, owner: SharedStreamLimiter, key_name: str, member: str) -> None:
        self._shared, self._member = owner, member
        super().__init__(owner, key_name)

    def release(self) -> None:
        if self._open:
            self._open = False
            self._shared.release_shared(self._key, self._member)


class SharedStreamLimiter(StreamLimiter):
    def __init__(self, connection: RedisConnection, slot_ttl_s: float) -> None:
        super().__init__()
        self._redis = connection
        self._ttl = slot_ttl_s

    def _run(self, script: str, key: str, *args: Any) -> Any:
        """The script's result, or None when Redis is unreachable (the caller counts locally)."""
        client = self._redis.client()
        if client is None:
            return None
        try:
            return client.eval(script, 1, key, *args)
        except redis.RedisError as exc:
            self._redis.failed(exc, client)
            return None

    def open_streams(self, key_name: str) -> int:
        shared = self._run(_COUNT_STREAMS, _key("streams", key_name))
        return super().open_streams(key_name) if shared is None else int(shared)

    def acquire(self, principal: Principal) -> StreamSlot:
        limit = principal.max_streams
        if limit is None:
            return super().acquire(principal)
        member = uuid.uuid4().hex
        opened = self._run(_OPEN_STREAM, _key("streams", principal.key_name), limit, member, self._ttl)
        if opened is None:
            return super().acquire(principal)
        if not int(opened):
            raise ApiError(
                429,
                f"too many concurrent streams for API key {principal.key_name!r}: the limit is {limit}",
                "rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        return _SharedSlot(self, principal.key_name, member)

    def release_shared(self, key_name: str, member: str) -> None:
        client = self._redis.client()
        if client is None:
            return  # the slot lapses on its own
        try:
            client.zrem(_key("streams", key_name), member)
        except redis.RedisError as exc:
            self._redis.failed(exc, client)
