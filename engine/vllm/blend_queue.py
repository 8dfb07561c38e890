"""The vLLM backend's one blend thread, with two priorities.

Every call into the blender (and through it into vLLM's worker) runs on one thread: the blender is
not thread-safe, and a call into the worker holds vLLM's engine core. A request's blend is
interactive; chunk-cache write-backs and ingestion's warm-up are background work that nobody waits
for. A background job starts only when no interactive one is waiting and no request is in vLLM
(`begin`/`end`: a call into the worker would hold vLLM's engine core between that request's steps),
so a request that arrives while write-backs are queued waits for at most the one that is running
(write-backs are queued one piece at a time for that reason). Aging keeps background work from
starving: while requests keep arriving, one background job runs every `aging_s`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], "Future[Any]", float]


class BlendQueue:
    """A single worker thread serving interactive jobs before background ones (see the module)."""

    def __init__(self, aging_s: float = 10.0, name: str = "ragblend-blend") -> None:
        self.aging_s = aging_s
        self._interactive: deque[_Job] = deque()
        self._background: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._active = 0  # requests in vLLM (prefilling or decoding)
        self._last_background = time.monotonic()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any, background: bool = False) -> Future[T]:
        """Run `fn(*args)` on the blend thread; its result or error comes through the future."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the blend queue is shut down")
            queue = self._background if background else self._interactive
            queue.append((lambda: fn(*args), future, time.monotonic()))
            self._cond.notify()
        return future

    def begin(self) -> None:
        """A request entered vLLM: background work waits (up to its aging) until it has left."""
        with self._cond:
            self._active += 1

    def end(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify()

    def waiting(self) -> tuple[int, int]:
        """(interactive, background) jobs queued and not started."""
        with self._cond:
            return len(self._interactive), len(self._background)

    def shutdown(self, wait: bool = True) -> None:
        """Run what is queued, then stop; `wait` blocks until the thread has ended."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _next(self) -> _Job | None:
        with self._cond:
            while True:
                since = self._last_background if self._active > 0 or self._interactive else 0.0
                age = time.monotonic() - max(self._background[0][2], since) if self._background else 0.0
                old = bool(self._background) and age >= self.aging_s
                if self._interactive and not old:
                    return self._interactive.popleft()
                if self._background and (old or self._active <= 0 or self._closed):
                    self._last_background = time.monotonic()
                    return self._background.popleft()
                if self._closed and not self._interactive:
                    return None  # closed and drained
                self._cond.wait(self.aging_s - age if self._background else None)

    def _serve(self) -> None:
        while (job := self._next()) is not None:
            fn, future, _ = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to whoever waits on the future
                future.set_exception(exc)
