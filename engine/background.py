"""Model work nobody is waiting for, run by the scheduler at background priority.

Chunk-cache write-backs, ingestion's perplexity chunking and chunk-cache warm-up all run the model,
but no user waits for their result the way a request waits for its first token. They are handed to
the one scheduler that runs the model (engine/scheduler.py) as background jobs: each runs as a
`PreemptibleTask` over the scheduler's pausing model, gets a step's prefill budget only when no
interactive prefill can use it and no request is decoding, and is paused at the next layer boundary
as soon as one can. Aging keeps it from starving: a job that has had no slice for
`SchedulerConfig.background_aging_s` gets one slice even while interactive work is running, so a
steady stream of requests slows background work down but never stops it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from engine.preemptible import PreemptibleTask

T = TypeVar("T")


class BackgroundJob(Generic[T]):
    """A unit of background model work; `wait` blocks the submitting thread until it has run."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self.fn, self.name = fn, name
        self.task: PreemptibleTask[T] | None = None
        self.submitted = self.last_slice = time.perf_counter()
        self.slices = 0
        self._done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def start(self, wake: Callable[[], None]) -> None:
        self.task = PreemptibleTask(self.fn, self.name, wake)

    def settle(self) -> None:
        """Called by the scheduler once the task is done (or abandoned at shutdown)."""
        task = self.task
        if task is not None and task.done:
            self.result, self.error = task.result, task.error
        elif self.error is None:
            self.error = RuntimeError(f"background job {self.name} was stopped before it finished")
        self._done.set()

    @property
    def settled(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> T:
        if not self._done.wait(timeout):
            raise TimeoutError(f"background job {self.name} did not finish within {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]
