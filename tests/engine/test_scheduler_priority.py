"""Priorities: background model work yields to an arriving request and finishes later, without
starving; waiting requests are admitted shortest remaining prefill first, with aging."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch

from engine.blend.options import BlendOptions
from engine.event_sink import ThreadSink
from engine.events import FinishEvent, GenerationEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from engine.scheduler import Scheduler
from engine.torch_engine import TorchEngine
from tests.engine.conftest import SchedulerFactory
from tests.engine.scheduling import drain, submit, suite_docs

PARAMS = SamplingParams(max_tokens=4)
COUNTING = "Count from one to one hundred in words, separated by commas."


def timed(
    scheduler: Scheduler, prompt: Prompt, params: SamplingParams = PARAMS
) -> tuple[float, list[GenerationEvent]]:
    """Seconds from submission to the first token, and every event."""
    started = time.perf_counter()
    _, sink = submit(scheduler, prompt, params)
    first: float | None = None
    events: list[GenerationEvent] = []
    for event in sink.events():
        if first is None and isinstance(event, TokenEvent):
            first = time.perf_counter() - started
        events.append(event)
    assert first is not None
    return first, events


def tokens(events: list[GenerationEvent]) -> list[int]:
    return [e.token_id for e in events if isinstance(e, TokenEvent)]


def test_background_work_yields_to_an_arriving_request_and_finishes_later(
    new_scheduler: SchedulerFactory, engine: TorchEngine, record_property: Callable[[str, object], None]
) -> None:
    question, docs = suite_docs(3, 2, 60)
    prompt = engine.build_prompt(question, docs, None)
    scheduler = new_scheduler(max_batch_size=4, prefill_chunk_tokens=64)
    timed(scheduler, prompt)  # the first request pays one-off set-up
    alone_s, alone_events = min((timed(scheduler, prompt) for _ in range(2)), key=lambda t: t[0])

    # Background work that alone takes about ten times the request: forwards of a long sequence
    # through the scheduler's pausing model, as ingestion's perplexity chunking runs them.
    ids = torch.randint(0, engine.model_config.vocab_size, (512,))
    t0 = time.perf_counter()
    engine.model.forward(ids, engine.model.new_cache(len(ids)))
    passes = max(4, int(10 * alone_s / (time.perf_counter() - t0)) + 1)
    model, ran = scheduler.background_model, threading.Event()
    done = [0]  # passes the background job has finished

    def work() -> int:
        for _ in range(passes):
            model.forward(ids, model.new_cache(len(ids)))
            done[0] += 1
            ran.set()
        return passes

    job = scheduler.run_background(work, "test-background")
    assert ran.wait(120), "the background job never ran"
    at_arrival = done[0]
    arrived = time.perf_counter()
    _, sink = submit(scheduler, prompt, PARAMS)
    events: list[GenerationEvent] = []
    at_first_token: int | None = None
    ttft_s = 0.0
    for event in sink.events():
        if at_first_token is None and isinstance(event, TokenEvent):
            at_first_token, settled_at_first_token = done[0], job.settled
            ttft_s = time.perf_counter() - arrived
        events.append(event)
    assert at_first_token is not None, "the request produced no token"
    # The TTFT against the same request alone, as a ratio, goes to the test report (JUnit property,
    # and the output of `pytest -rA`); it is not asserted, since seconds on a shared machine are
    # noise. Waiting behind the job would make it about 10 or more.
    ratio = ttft_s / alone_s
    record_property("ttft_vs_alone", round(ratio, 2))
    print(f"TTFT beside background work {ttft_s * 1000:.0f} ms, alone {alone_s * 1000:.0f} ms: {ratio:.2f}x")
    assert at_arrival < passes, "the background job ended before the request arrived; make it longer"
    # Counted in the job's own passes, not in seconds (the machine is shared): had the request
    # waited behind the job, every pass would be done by its first token. Yielding at a layer
    # boundary lets at most the pass in flight finish first.
    assert not settled_at_first_token, (at_arrival, at_first_token, passes)
    assert at_first_token <= at_arrival + 1, (at_arrival, at_first_token, passes)
    assert job.wait(600) == passes  # it was resumed and finished, after the request
    assert done[0] == passes
    assert tokens(events) == tokens(alone_events)


def test_background_work_is_not_starved_by_steady_decoding(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    scheduler = new_scheduler(max_batch_size=4, prefill_chunk_tokens=16, background_aging_s=0.05)
    model = scheduler.background_model
    ids = torch.randint(0, engine.model_config.vocab_size, (96,))
    _, sink = submit(scheduler, engine.build_prompt(COUNTING, None, None), SamplingParams(max_tokens=160))
    events = sink.events()
    assert isinstance(next(events), TokenEvent)  # decoding has begun: every step is interactive now
    job = scheduler.run_background(lambda: model.forward(ids, model.new_cache(len(ids))), "aged")
    job.wait(120)
    still_decoding = scheduler.stats().batch_size == 1
    rest = list(events)
    assert isinstance(rest[-1], FinishEvent)
    assert still_decoding, "the answer ended before the background job; it was starved or the answer short"


def test_waiting_requests_are_admitted_cheapest_first_with_aging(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    blend = BlendOptions(mode="cachecraft", ratio=0.15)
    question, docs = suite_docs(5, 3, 120)
    warm = engine.build_prompt(question, docs, None)
    list(engine.generate_unbatched(warm, PARAMS, blend=blend, salt="srpf"))  # its caches are stored

    def first_admitted(aging: float) -> str:
        scheduler = new_scheduler(max_batch_size=1, aging_tokens_per_s=aging)
        # The blocker holds the only place in the batch until it is cancelled, however slow the
        # machine: both waiting requests are in the queue (and priced) before the place frees up.
        stop = threading.Event()
        blocker = ThreadSink()
        scheduler.submit(
            engine.build_prompt(COUNTING, None, None), SamplingParams(max_tokens=4000), blocker, cancel=stop
        )
        blocker_events = blocker.events()
        next(blocker_events)  # the only place in the batch is taken: the next two wait
        # The cold request (new documents under a salt of its own) arrives first, the warm one later.
        cold_id, cold = submit(scheduler, warm, PARAMS, blend, f"srpf-cold-{aging}")
        time.sleep(0.5)
        warm_id, hot = submit(scheduler, warm, PARAMS, blend, "srpf")
        for _ in range(3):  # a few more steps: the scheduler has seen and priced both
            assert isinstance(next(blocker_events), TokenEvent), "the blocker ended before it was cancelled"
        stop.set()
        list(blocker_events), drain(cold), drain(hot)
        log = scheduler.step_log()
        began = {
            i: min(r.index for r in log if any(j == i for j, _ in r.prefilled)) for i in (cold_id, warm_id)
        }
        return "warm" if began[warm_id] < began[cold_id] else "cold"

    # Without aging the warm request (a few recomputed rows) overtakes the cold one ahead of it;
    # with strong aging, the half second the cold one waited outweighs its cost: first come, first served.
    assert first_admitted(0.0) == "warm"
    assert first_admitted(1e6) == "cold"
