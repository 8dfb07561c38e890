"""A Redis (or Redis Cluster) client that survives server failures on its own.

Any failure reported through ``failed`` drops the client and opens a backoff window in
which ``client()`` answers None at once, so a dead or frozen server costs one timeout
rather than one per request. The first call after the window builds a fresh client; a
restarted server is therefore picked up without any action.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from cache.blob_tier import RateLimitedLog

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss", "redis-cluster": "redis"}
_READ_SIZE = 1 << 20  # larger socket reads make big values several times faster


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://`` and the like)."""
    return url.split("://", 1)[0] in _CLUSTER_SCHEMES


class RedisConnection:
    """Lazily connected client with a failure backoff. Thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        timeout_s: float = 0.5,
        backoff_s: float = 1.0,
        max_bytes: int = 0,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        scheme, rest = url.split("://", 1) if "://" in url else ("redis", url)
        self.cluster = cluster or scheme in _CLUSTER_SCHEMES
        self.url = f"{_CLUSTER_SCHEMES.get(scheme, scheme)}://{rest}"
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_bytes = max_bytes
        self._on_error = on_error
        self._client: Any = None
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._warn = RateLimitedLog()

    def _connect(self) -> Any:
        kwargs: dict[str, Any] = {
            "socket_timeout": self.timeout_s,
            "socket_connect_timeout": self.timeout_s,
            "retry": Retry(NoBackoff(), 0),  # the backoff window replaces retries
            "socket_read_size": _READ_SIZE,
        }
        if self.cluster:
            client: Any = RedisCluster.from_url(self.url, **kwargs)
        else:
            client = redis.Redis.from_url(self.url, **kwargs)
        if self.max_bytes > 0:
            try:
                client.config_set("maxmemory", str(self.max_bytes))
                client.config_set("maxmemory-policy", "allkeys-lru")
            except redis.RedisError as exc:
                self._warn.warning("redis tier: cannot set maxmemory (%s); using server settings", exc)
        return client

    def client(self) -> Any:
        """The live client, or None while Redis is considered down (within the backoff)."""
        with self._lock:
            if self._client is not None:
                return self._client
            if time.monotonic() < self._down_until:
                return None
        try:
            client = self._connect()
        except Exception as exc:  # a Cluster client talks to the server while constructed
            self.failed(exc, None)
            return None
        with self._lock:
            if self._client is None:
                self._client = client
            return self._client

    def failed(self, exc: BaseException, client: Any) -> None:
        """Report that ``client`` failed with ``exc``: count, log (rate-limited), back off."""
        if self._on_error is not None:
            self._on_error()
        self._warn.warning("redis tier: %s: %s (treated as a miss)", type(exc).__name__, exc)
        with self._lock:
            self._down_until = max(self._down_until, time.monotonic() + self.backoff_s)
            if client is not None and self._client is client:
                self._client = None
        if client is not None:
            # Closing a broken client must not turn into an error of its own.
            with contextlib.suppress(Exception):
                client.close()

    def ping(self) -> bool:
        """Whether Redis answers now."""
        client = self.client()
        if client is None:
            return False
        try:
            return bool(client.ping())
        except Exception as exc:
            self.failed(exc, client)
            return False

    def close(self) -> None:
        """Close the client; no new one is made afterwards."""
        with self._lock:
            client, self._client = self._client, None
            self._down_until = float("inf")
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
