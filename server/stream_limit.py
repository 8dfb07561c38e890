"""Caps the number of concurrent streamed responses per API key (429 past the cap)."""

from __future__ import annotations

from collections import Counter

from server.api_keys import Principal
from server.errors import ApiError


class StreamSlot:
    """One open stream; `release` is idempotent so every exit path may call it."""

    def __init__(self, owner: StreamLimiter, key_name: str) -> None:
        self._owner, self._key, self._open = owner, key_name, True

    def release(self) -> None:
        if self._open:
            self._open = False
            self._owner._release(self._key)

    def __del__(self) -> None:
        # A response whose body was never iterated (client gone before the first byte) still frees it.
        self.release()


class StreamLimiter:
    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def open_streams(self, key_name: str) -> int:
        return self._open[key_name]

    def acquire(self, principal: Principal) -> StreamSlot:
        limit = principal.max_streams
        if limit is not None and self._open[principal.key_name] >= limit:
            raise ApiError(
                429,
                f"too many concurrent streams for API key {principal.key_name!r}: the limit is {limit}",
                "rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        self._open[principal.key_name] += 1
        return StreamSlot(self, principal.key_name)

    def _release(self, key_name: str) -> None:
        self._open[key_name] -= 1
        if self._open[key_name] <= 0:
            del self._open[key_name]
