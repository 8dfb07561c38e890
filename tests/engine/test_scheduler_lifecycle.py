"""Admission, cancellation and prefill interleaving, read from the scheduler's step log and stats."""

from __future__ import annotations

import threading
import time

import pytest

from engine.event_sink import ThreadSink
from engine.events import FinishEvent, TokenEvent
from engine.request_queue import QueueFull
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from tests.engine.conftest import SchedulerFactory
from tests.engine.scheduling import drain, outcome, submit, suite_docs

LONG = SamplingParams(max_tokens=300)
ESSAY = "Write a detailed essay about the history of the Roman Empire."  # a long greedy answer


def _wait_for(condition: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_cancel_frees_the_slot_and_its_kv(new_scheduler: SchedulerFactory, engine: TorchEngine) -> None:
    scheduler = new_scheduler(max_batch_size=4)
    prompt = engine.build_prompt(ESSAY, None, None)
    keep_id, keep = submit(scheduler, prompt, LONG)
    cancel = threading.Event()
    gone = ThreadSink()
    gone_id = scheduler.submit(prompt, LONG, gone, cancel)
    _wait_for(lambda: scheduler.stats().batch_size == 2)
    before = scheduler.stats()
    cancel.set()
    final = drain(gone).final
    after = scheduler.stats()
    assert final.finish_reason == "cancelled"
    assert after.batch_size == before.batch_size - 1
    assert after.kv_rows < before.kv_rows
    # The step log is written at the end of each step, just after the events were sent.
    _wait_for(lambda: any(gone_id in r.finished for r in scheduler.step_log()))
    log = scheduler.step_log()
    finished_at = next(r.index for r in log if gone_id in r.finished)
    assert all(gone_id not in r.decoded for r in log if r.index >= finished_at)
    # The survivor goes on alone in the batch.
    _wait_for(lambda: any(r.decoded == (keep_id,) for r in scheduler.step_log()))
    scheduler.close()
    assert drain(keep).final.finish_reason in ("cancelled", "stop", "length")
    assert scheduler.stats().kv_bytes == 0


def test_cancel_while_waiting_and_while_prefilling(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    scheduler = new_scheduler(max_batch_size=1, prefill_chunk_tokens=1)
    question, docs = suite_docs(2, 4, 80)
    long_prompt = engine.build_prompt(question, docs, None)
    first_id, first = submit(scheduler, long_prompt, LONG)
    waiting, cancel_waiting = ThreadSink(), threading.Event()
    scheduler.submit(long_prompt, LONG, waiting, cancel_waiting)
    _wait_for(lambda: any(first_id in [i for i, _ in r.prefilled] for r in scheduler.step_log()))
    cancel_waiting.set()
    assert drain(waiting).final.finish_reason == "cancelled"
    scheduler.close()  # cancels the first one mid-prefill (one layer per step at this budget)
    got = drain(first)
    assert got.final.finish_reason == "cancelled" and got.tokens == []


def test_full_queue_raises_queue_full(new_scheduler: SchedulerFactory, engine: TorchEngine) -> None:
    scheduler = new_scheduler(max_batch_size=1, max_waiting=1)
    prompt = engine.build_prompt("Tell me a long story about a dragon.", None, None)
    sinks = [submit(scheduler, prompt, LONG)[1], submit(scheduler, prompt, LONG)[1]]
    with pytest.raises(QueueFull) as info:
        submit(scheduler, prompt, LONG)
    assert info.value.retry_after >= 1
    assert "queue is full" in str(info.value)
    scheduler.close()
    assert [drain(s).final.finish_reason for s in sinks] == ["cancelled", "cancelled"]
    with pytest.raises(RuntimeError, match="closed"):
        submit(scheduler, prompt, LONG)


def test_long_prefill_is_interleaved_with_running_decodes(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    chunk = 16
    scheduler = new_scheduler(max_batch_size=4, prefill_chunk_tokens=chunk)
    layers = engine.model_config.num_layers
    runner_prompt = engine.build_prompt(ESSAY, None, None)
    run_id, run = submit(scheduler, runner_prompt, LONG)
    events = run.events()
    head = [next(events) for _ in range(3)]
    assert all(isinstance(e, TokenEvent) for e in head)
    question, docs = suite_docs(4, 5, 90)
    long_prompt = engine.build_prompt(question, docs, None)
    assert len(long_prompt) > 20 * chunk
    long_id, long_sink = submit(scheduler, long_prompt, SamplingParams(max_tokens=4))
    long_out = drain(long_sink)
    assert isinstance(long_out.final, FinishEvent)
    log = scheduler.step_log()
    prefill_steps = [r for r in log if any(i == long_id for i, _ in r.prefilled)]
    work = [w for r in prefill_steps for i, w in r.prefilled if i == long_id]
    # The whole prefill is done (every row through every layer), in many slices of about one chunk:
    # each slice is at most the budget plus one layer of the prompt.
    assert sum(work) == len(long_prompt) * layers
    assert len(prefill_steps) >= 10
    assert max(work) <= chunk * layers + len(long_prompt)
    # While it was being prefilled, the running request got a token in every step.
    assert all(run_id in r.decoded for r in prefill_steps)
    scheduler.close()
    rest = outcome(head + list(events))
    assert rest.final.completion_tokens >= 3 + len(prefill_steps)


def test_a_failed_prefill_reaches_its_caller_and_the_scheduler_serves_on(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    scheduler = new_scheduler(max_batch_size=2)
    # Past the model's positions: the forward refuses it (the engine's check_fits would have, earlier).
    too_long = engine.build_prompt("Summarise.", ["word " * (engine.max_context + 10)], None)
    assert len(too_long) > engine.max_context
    _, failing = submit(scheduler, too_long, SamplingParams(max_tokens=4))
    with pytest.raises(ValueError, match="exceeds the model's context"):
        drain(failing)
    _, ok = submit(scheduler, engine.build_prompt("Hi!", None, None), SamplingParams(max_tokens=4))
    assert drain(ok).final.finish_reason in ("stop", "length")
    assert scheduler.stats().prefilling == 0
