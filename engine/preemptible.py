"""Long model work (prefills, blended prefills, chunk-cache write-backs) run in slices between decode steps.

A task runs a plain function (`Blender.prefill`, `LlamaModel.forward`, ...) on its own thread. The
model it uses is a `pausing_copy`, whose layers call `checkpoint(rows)` before each layer; there the
task hands the turn back to the scheduler once the budget of its slice is spent. So the blending code
needs no change to become resumable, and a slice computes exactly what an uninterrupted call would.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

from engine.layers import DecoderLayer
from engine.model import LlamaModel

T = TypeVar("T")

_current = threading.local()


class TaskAborted(Exception):
    """Raised inside an aborted task at its next checkpoint, so its thread unwinds and ends."""


def checkpoint(rows: int) -> None:
    """Called before each layer with the number of rows it will compute; a no-op outside a task."""
    task: PreemptibleTask[object] | None = getattr(_current, "task", None)
    if task is not None:
        task.checkpoint(rows)


class PausingLayer(DecoderLayer):
    """A decoder layer sharing another's weights that passes a checkpoint before computing."""

    def __init__(self, layer: DecoderLayer) -> None:  # no super().__init__: the weights are shared
        self.__dict__.update(vars(layer))

    def project_qkv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        checkpoint(h.shape[0])
        return super().project_qkv(h)


def pausing_copy(model: LlamaModel) -> LlamaModel:
    """The same model (weights shared, nothing copied) whose layers pause inside preemptible tasks."""
    paused = copy.copy(model)
    paused.layers = [PausingLayer(layer) for layer in model.layers]
    return paused


class PreemptibleTask(Generic[T]):
    """Runs `fn` on its own thread in slices that the scheduler grants with `resume`.

    The thread starts at once and runs freely up to its first checkpoint, so a chunk-cache fetch (I/O)
    overlaps other requests' decode steps. From then on it runs only inside `resume`: the scheduler
    waits while the slice runs, so the two never compute at the same time. A slice costs at least one
    layer and ends at the first checkpoint after `budget` rows x layers are spent.
    `on_ready` is called (from the task thread) when the task first pauses and when it ends.
    """

    def __init__(self, fn: Callable[[], T], name: str, on_ready: Callable[[], None]) -> None:
        self._fn = fn
        self._on_ready = on_ready
        self._cond = threading.Condition()
        self._turn = False  # the task may compute (it holds the turn)
        self._waiting = False  # the task is parked at a checkpoint
        self._aborted = False
        self._parked_before = False
        self._budget = 0
        self._spent = 0
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        """True when `resume` would not block on a free-running thread: parked or finished."""
        with self._cond:
            return self._waiting or self.done

    def resume(self, budget: int) -> int:
        """Let the parked task run until it has spent `budget` or ended; return what it spent."""
        with self._cond:
            if self.done:
                return 0
            if not self._waiting:
                raise RuntimeError("resume() on a task that is not parked at a checkpoint")
            self._budget, self._spent, self._turn = budget, 0, True
            self._cond.notify_all()
            while self._turn and not self.done:
                self._cond.wait()
            return self._spent

    def abort(self) -> None:
        """Make the task raise TaskAborted at its next checkpoint (at once if it is parked)."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def checkpoint(self, rows: int) -> None:
        with self._cond:
            if self._turn and self._spent < self._budget and not self._aborted:
                self._spent += rows
                return
            first = not self._parked_before
            self._parked_before = True
            self._turn, self._waiting = False, True
            self._cond.notify_all()
        if first:  # wake the scheduler, which may be idle; outside our lock, as it takes its own
            self._on_ready()
        with self._cond:
            while not self._turn and not self._aborted:
                self._cond.wait()
            self._waiting = False
            if self._aborted:
                raise TaskAborted
            self._spent += rows

    def _run(self) -> None:
        _current.task = self
        try:
            self.result = self._fn()
        except BaseException as exc:  # handed to the scheduler, which reports it to the request
            self.error = exc
        finally:
            with self._cond:
                self.done, self._turn, self._waiting = True, False, False
                self._cond.notify_all()
            self._on_ready()
