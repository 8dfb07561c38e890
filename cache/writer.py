"""Background writer: lower-tier writes and promotions run off the request path.

The queue is bounded; when it is full a new task is dropped and counted rather than
making the request wait, since a lost cache write only costs a later recompute.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Task = Callable[[], None]


class BackgroundWriter:
    """One daemon thread running submitted tasks in order."""

    def __init__(self, max_pending: int, name: str = "ragblend-kv-writer") -> None:
        self._queue: queue.Queue[Task | None] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._dropped = 0
        self._failed = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, task: Task, weight: int = 1) -> bool:
        """Queue ``task``; False (and ``weight`` added to ``dropped``) if the queue is full."""
        with self._lock:
            closed = self._closed
        if not closed:
            try:
                self._queue.put_nowait(task)
                return True
            except queue.Full:
                pass
        with self._lock:
            self._dropped += weight
        return False

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task is None:
                    return
                task()
            except Exception:
                with self._lock:
                    self._failed += 1
                log.exception("background cache write failed")
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Block until every task queued so far has run."""
        self._queue.join()

    @property
    def pending(self) -> int:
        """Tasks queued or running."""
        return self._queue.unfinished_tasks

    @property
    def dropped(self) -> int:
        """Weight of the tasks dropped because the queue was full (or after close)."""
        with self._lock:
            return self._dropped

    @property
    def failed(self) -> int:
        """Tasks that raised."""
        with self._lock:
            return self._failed

    def close(self, timeout: float | None = 10.0) -> None:
        """Run what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
