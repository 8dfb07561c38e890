"""Per-key request rate limits: a token bucket per API key, refilled continuously."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """Holds up to `capacity` requests and gains `rate` of them per second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one request; 0.0 when allowed, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """A bucket per key name: a key limited to N requests per minute may send a burst of N, then
    one every 60/N seconds. Runs on the event loop only, so no lock is needed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key_name: str, requests_per_minute: float | None) -> int:
        """0 when the request may go on, else a Retry-After value in whole seconds (at least 1)."""
        if requests_per_minute is None:
            return 0
        now = self._clock()
        bucket = self._buckets.get(key_name)
        if bucket is None or bucket.rate != requests_per_minute / 60.0:
            capacity = max(1.0, requests_per_minute)
            bucket = TokenBucket(capacity, requests_per_minute / 60.0, capacity, now)
            self._buckets[key_name] = bucket
        wait = bucket.take(now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))
