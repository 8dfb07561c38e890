"""Where a scheduled request's events go: an asyncio consumer (a `Job`) or a blocked thread."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Protocol

from engine.events import GenerationEvent


class EventSink(Protocol):
    """Receives a request's events in order, an exception if it failed, then `end()` exactly once."""

    def put(self, item: GenerationEvent | BaseException) -> None: ...

    def end(self) -> None: ...


_END = object()


class ThreadSink:
    """A sink read by one thread, which blocks in `events()` until the scheduler delivers."""

    def __init__(self) -> None:
        self._items: queue.SimpleQueue[object] = queue.SimpleQueue()

    def put(self, item: GenerationEvent | BaseException) -> None:
        self._items.put(item)

    def end(self) -> None:
        self._items.put(_END)

    def events(self) -> Iterator[GenerationEvent]:
        """Events until the end; re-raises the request's exception."""
        while True:
            item = self._items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
