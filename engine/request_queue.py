"""A bounded queue in front of the engine, bridging its worker thread to asyncio consumers."""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

from engine.events import GenerationEvent

log = logging.getLogger(__name__)

Work = Callable[[threading.Event], Iterator[GenerationEvent]]
_DONE = object()


class QueueFull(Exception):
    """No room for another request; `retry_after` is a hint in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"server busy: request queue is full, retry after {retry_after} s")
        self.retry_after = retry_after


class Job:
    """One submitted request: its events arrive on the event loop that submitted it.

    `work` runs on the queue's worker; a backend with its own scheduler passes None and delivers
    through `put` and `end` (the `EventSink` interface) from its engine thread instead.
    """

    def __init__(self, work: Work | None, loop: asyncio.AbstractEventLoop) -> None:
        self.work = work
        self.loop = loop
        self.cancelled = threading.Event()
        self._events: asyncio.Queue[object] = asyncio.Queue()

    def cancel(self) -> None:
        self.cancelled.set()

    def put(self, item: GenerationEvent | BaseException) -> None:
        self._deliver(item)

    def end(self) -> None:
        self._deliver(_DONE)

    def _deliver(self, item: object) -> None:
        try:
            self.loop.call_soon_threadsafe(self._events.put_nowait, item)
        except RuntimeError:  # the consumer's event loop is gone; nobody is listening any more
            self.cancelled.set()

    async def events(self) -> AsyncIterator[GenerationEvent]:
        """Events in order; re-raises an engine exception; cancels the work if the consumer stops."""
        try:
            while True:
                item = await self._events.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            self.cancel()


class RequestQueue:
    """Runs jobs one at a time on a worker thread; at most `max_waiting` jobs wait behind the running one."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        # Unbounded underneath (maxsize=0 would mean 'infinite' to queue.Queue); bounded by submit().
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._service_s = 1.0  # running average of one job's duration, for Retry-After
        self.running = 0
        self._thread = threading.Thread(target=self._run, name="engine-worker", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, work: Work) -> Job:
        """Queue `work`; raises QueueFull when `max_waiting` jobs already wait. Call from the event loop."""
        if self.depth >= self.max_waiting:
            raise QueueFull(max(1, math.ceil(self._service_s * (self.depth + 1))))
        job = Job(work, asyncio.get_running_loop())
        self._queue.put_nowait(job)
        return job

    def close(self) -> None:
        self._queue.put_nowait(None)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.cancelled.is_set():
                job._deliver(_DONE)
                continue
            started = time.perf_counter()
            self.running = 1
            try:
                if job.work is None:
                    raise RuntimeError("a job without work was submitted to the request queue")
                for event in job.work(job.cancelled):
                    job._deliver(event)
            except Exception as exc:  # surfaced to the request; the worker keeps serving
                log.exception("generation failed")
                job._deliver(exc)
            finally:
                self.running = 0
                job._deliver(_DONE)
                self._service_s = 0.8 * self._service_s + 0.2 * (time.perf_counter() - started)
