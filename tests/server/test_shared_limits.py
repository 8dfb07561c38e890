"""Per-key limits shared by replicas through a real redis-server: two limiters stand for two gateways."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cache.redis_conn import RedisConnection
from server.api_keys import Principal
from server.errors import ApiError
from server.gateway import build_gateway
from server.services import Services
from server.settings import Settings
from server.shared_limits import SharedRateLimiter, SharedStreamLimiter
from tests.cache.conftest import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture, for this module


def principal(name: str, max_streams: int | None) -> Principal:
    return Principal(key_name=name, tenant="t", salt="s", requests_per_minute=None, max_streams=max_streams)


def test_two_replicas_share_one_rate_limit(redis_server: RedisServer) -> None:
    a = SharedRateLimiter(RedisConnection(redis_server.url))
    b = SharedRateLimiter(RedisConnection(redis_server.url))
    # 4 per minute: a burst of 4 in all, not 4 per replica
    answers = [limiter.check("k", 4) for limiter in (a, b, a, b, a, b)]
    assert answers[:4] == [0, 0, 0, 0]
    assert all(wait >= 1 for wait in answers[4:])
    assert a.check("other", 4) == 0 and a.check("free", None) == 0

    redis_server.stop()  # Redis gone: each replica counts alone, no request fails
    assert a.check("k", 4) == 0


def test_two_replicas_share_one_stream_cap(redis_server: RedisServer) -> None:
    a = SharedStreamLimiter(RedisConnection(redis_server.url), slot_ttl_s=60)
    b = SharedStreamLimiter(RedisConnection(redis_server.url), slot_ttl_s=60)
    p = principal("k", 2)
    first, second = a.acquire(p), b.acquire(p)
    assert a.open_streams("k") == b.open_streams("k") == 2
    with pytest.raises(ApiError) as refused:
        a.acquire(p)
    assert refused.value.status == 429 and "the limit is 2" in refused.value.message
    second.release()
    second.release()  # idempotent
    third = a.acquire(p)
    assert b.open_streams("k") == 2
    first.release()
    third.release()
    assert a.open_streams("k") == 0
    assert b.acquire(principal("k", None)) is not None  # no cap: nothing counted in Redis


def test_a_dead_replicas_streams_lapse(redis_server: RedisServer) -> None:
    dead = SharedStreamLimiter(RedisConnection(redis_server.url), slot_ttl_s=1)
    alive = SharedStreamLimiter(RedisConnection(redis_server.url), slot_ttl_s=1)
    p = principal("k", 1)
    slot = dead.acquire(p)
    slot._open = False  # the replica died: it never releases
    with pytest.raises(ApiError):
        alive.acquire(p)
    time.sleep(1.2)
    alive.acquire(p).release()


def test_gateway_shares_limits_when_redis_is_configured(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_server.url)
    gateway = build_gateway(Services(settings=settings, queue=None))  # type: ignore[arg-type]
    assert isinstance(gateway.limiter, SharedRateLimiter)
    assert isinstance(gateway.streams, SharedStreamLimiter)
    local = build_gateway(Services(settings=Settings(data_dir=tmp_path), queue=None))  # type: ignore[arg-type]
    assert not isinstance(local.limiter, SharedRateLimiter)
