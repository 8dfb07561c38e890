"""Chunk selection's own bounded executor.

A CORAG search may run for its whole `time_cap_ms` (up to 10 s). On the shared threadpool a few of
them would hold every thread that the routes' other blocking calls (prompts, collections) need, so
searches run on a pool of their own: `workers` at once, `waiting` more queued, and past that a 503
with Retry-After (the search is refused before it starts; nothing is lost)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from server.errors import ApiError
from server.services import Services

T = TypeVar("T")
_KEY = "selection_pool"


class SelectionPool:
    """Thread-safe; a slot is held until the search itself ends, even if its caller has gone."""

    def __init__(self, workers: int, waiting: int) -> None:
        self.workers, self.waiting = workers, waiting
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ragblend-select")
        self._slots = threading.BoundedSemaphore(workers + waiting)

    async def run(self, fn: Callable[[], T]) -> T:
        if not self._slots.acquire(blocking=False):
            raise ApiError(
                503,
                f"selection: {self.workers} searches running and {self.waiting} waiting, the most this "
                "server takes; retry shortly",
                "unavailable",
                headers={"Retry-After": "1"},
            )
        try:
            future: Future[T] = self._executor.submit(fn)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def selection_pool(services: Services) -> SelectionPool:
    """The services' pool, made on first use from the settings."""
    pool = services.extras.get(_KEY)
    if not isinstance(pool, SelectionPool):
        settings = services.settings
        pool = SelectionPool(settings.selection_workers, settings.selection_waiting)
        pool = services.extras.setdefault(_KEY, pool)
    assert isinstance(pool, SelectionPool)
    return pool
