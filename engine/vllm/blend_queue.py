"""The vLLM backend's one blend thread, with two priorities.

Every call into the blender (and through it into vLLM's worker) runs on one thread: the blender is
not thread-safe, and a call into the worker holds vLLM's engine core. A request's blend is
interactive; chunk-cache write-backs and ingestion's warm-up are background work that nobody waits
for. A background job starts only when no interactive one is waiting and no request is in vLLM
(`begin`/`end`: a call into the worker would hold vLLM's engine core between that request's steps).
Once started, a background job yields at its pause points (`pause`, called by the worker blender
before each call into the worker, one slice of a piece each): interactive jobs that arrived run
there, and the job waits while a request is in vLLM, so a request waits for at most one slice of
background work, not a whole job. Aging keeps background work from starving: while requests keep
arriving, background work gets one turn (a job's start, or one slice of it) every `aging_s`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], "Future[Any]", float]


class BlendQueueClosed(Exception):
    """Raised at a pause point of a background job once the queue is shut down without it."""


_Turn = Literal["interactive", "background"] | None


class BlendQueue:
    """A single worker thread serving interactive jobs before background ones (see the module)."""

    def __init__(self, aging_s: float = 10.0, name: str = "ragblend-blend") -> None:
        self.aging_s = aging_s
        self._interactive: deque[_Job] = deque()
        self._background: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dropping = False  # shut down with queued background work dropped
        self._active = 0  # requests in vLLM (prefilling or decoding)
        self._last_background = time.monotonic()
        self._running: float | None = None  # when the background job running now was queued
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

    def pause(self) -> None:
        """A pause point of the background job running now, between two of its steps: the interactive
        jobs that are due run first, and the job waits while a request is in vLLM, by the same rule
        and aging as a background job that has not started. Anywhere else (another thread, or an
        interactive job) it returns at once."""
        queued = self._running
        if queued is None or threading.current_thread() is not self._thread:
            return
        while True:
            with self._cond:
                if self._dropping:
                    raise BlendQueueClosed("the blend queue is shutting down")
                turn, wait = self._turn(queued)
                if turn == "background":
                    self._last_background = time.monotonic()
                    return
                if turn is None:
                    self._cond.wait(wait)
                    continue
                job = self._interactive.popleft()
            self._running = None  # the interactive job's own calls do not pause
            try:
                _run(job)
            finally:
                self._running = queued

    def shutdown(self, wait: bool = True, drop_background: bool = False) -> None:
        """Run what is queued, then stop; `wait` blocks until the thread has ended. With
        `drop_background`, queued background jobs are cancelled instead and the one running stops at
        its next pause point (`pause` raises BlendQueueClosed): what is being shut down may not be
        able to serve them, and nobody waits for them."""
        with self._cond:
            self._closed = True
            if drop_background:
                self._dropping = True
                for _, future, _ in self._background:
                    future.cancel()
                self._background.clear()
            self._cond.notify()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _turn(self, queued: float | None) -> tuple[_Turn, float | None]:
        """Whose turn it is (called with the lock held): an interactive job's, or the background job
        queued at `queued` (None: there is none), or nobody's yet, with how long to wait at most."""
        if queued is None:
            return ("interactive" if self._interactive else None), None
        since = self._last_background if self._active > 0 or self._interactive else 0.0
        age = time.monotonic() - max(queued, since)
        old = age >= self.aging_s
        if self._interactive and not old:
            return "interactive", None
        if old or self._active <= 0 or self._closed:
            return "background", None
        return None, self.aging_s - age

    def _next(self) -> tuple[_Job, bool] | None:
        """The next job to run and whether it is background work; None once closed and drained."""
        with self._cond:
            while True:
                turn, wait = self._turn(self._background[0][2] if self._background else None)
                if turn == "interactive":
                    return self._interactive.popleft(), False
                if turn == "background":
                    self._last_background = time.monotonic()
                    return self._background.popleft(), True
                if self._closed and not self._interactive:
                    return None
                self._cond.wait(wait)

    def _serve(self) -> None:
        while (picked := self._next()) is not None:
            job, background = picked
            self._running = job[2] if background else None
            try:
                _run(job)
            finally:
                self._running = None


def _run(job: _Job) -> None:
    fn, future, _ = job
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except BaseException as exc:  # delivered to whoever waits on the future
        future.set_exception(exc)
