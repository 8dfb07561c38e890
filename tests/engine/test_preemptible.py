"""Preemptible tasks: run freely to their first checkpoint, then only in granted slices."""

from __future__ import annotations

import threading
from typing import Any

import torch

from engine.preemptible import PreemptibleTask, TaskAborted, checkpoint, pausing_copy
from engine.torch_engine import TorchEngine


def _wait(task: PreemptibleTask[Any]) -> None:
    for _ in range(500):
        if task.ready:
            return
        threading.Event().wait(0.01)
    raise AssertionError("task never reached a checkpoint")


def test_slices_follow_the_budget_and_the_result_comes_back() -> None:
    trace: list[int] = []

    def work() -> str:
        for step in range(6):
            checkpoint(10)
            trace.append(step)
        return "done"

    task: PreemptibleTask[str] = PreemptibleTask(work, "t", lambda: None)
    _wait(task)
    assert trace == []  # parked at the first checkpoint
    assert task.resume(25) == 30  # a slice ends at the first checkpoint past the budget
    assert trace == [0, 1, 2]
    assert task.resume(1) == 10
    assert trace == [0, 1, 2, 3]
    assert task.resume(100) == 20
    assert task.done and task.result == "done" and task.error is None


def test_abort_unwinds_a_parked_task() -> None:
    def work() -> None:
        while True:
            checkpoint(1)

    task: PreemptibleTask[None] = PreemptibleTask(work, "t", lambda: None)
    _wait(task)
    task.abort()
    task.join(5)
    assert task.done and isinstance(task.error, TaskAborted)


def test_errors_are_kept_for_the_scheduler() -> None:
    def work() -> None:
        checkpoint(1)
        raise ValueError("bad prompt")

    task: PreemptibleTask[None] = PreemptibleTask(work, "t", lambda: None)
    _wait(task)
    task.resume(10)
    assert task.done and isinstance(task.error, ValueError)


def test_a_paused_prefill_computes_exactly_what_an_uninterrupted_one_does(engine: TorchEngine) -> None:
    model = engine.model
    ids = torch.tensor(engine.build_prompt("Where is the Eiffel Tower?", None, None).ids)
    want = model.forward(ids, model.new_cache(len(ids)))
    paused = pausing_copy(model)
    task: PreemptibleTask[torch.Tensor] = PreemptibleTask(
        lambda: paused.forward(ids, paused.new_cache(len(ids))), "prefill", lambda: None
    )
    _wait(task)
    slices = []
    while not task.done:
        slices.append(task.resume(1))  # one layer per slice
    assert slices == [len(ids)] * model.cfg.num_layers
    assert task.result is not None and torch.equal(task.result, want)
