"""Blended requests (cacheblend over documents) served in a batch, cold and then from chunk caches."""

from __future__ import annotations

import threading

from engine.blend.options import BlendOptions
from engine.event_sink import ThreadSink
from engine.events import FinishEvent, GenerationEvent, TokenEvent
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from tests.engine.conftest import SchedulerFactory
from tests.engine.scheduling import Outcome, alone, drain, outcome, submit, suite_docs

PARAMS = SamplingParams(max_tokens=8)
CACHEBLEND = BlendOptions(mode="cacheblend", ratio=0.15)
PREFIX = BlendOptions(mode="prefix")


def test_blended_requests_in_a_batch_match_their_runs_alone(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    # Disjoint documents, so no request's write-back changes what another one finds in the cache; the
    # shared system prefix is cached beforehand under both salts, for the same reason.
    prompts = []
    for example in (0, 4, 8):  # passages 0-1, 4-5 and 8-9
        question, docs = suite_docs(example, 2, 40)
        prompts.append(engine.build_prompt(question, docs, None))
    prefix = len(prompts[0].pieces[0].ids)
    for salt in ("sched-ref", "sched-batch"):
        alone(engine, engine.build_prompt("Warm up.", ["A short note."], None), PARAMS, CACHEBLEND, salt)
    plain = engine.build_prompt("Name the largest ocean on Earth.", None, None)
    scheduler = new_scheduler(max_batch_size=8, prefill_chunk_tokens=32)

    def batched(salt: str) -> list[tuple[int, Outcome]]:
        sinks = [submit(scheduler, p, PARAMS, CACHEBLEND, salt) for p in prompts]
        sinks.append(submit(scheduler, plain, PARAMS))
        return [(i, drain(s)) for i, s in sinks]

    for phase in ("cold", "warm"):
        want = [alone(engine, p, PARAMS, CACHEBLEND, "sched-ref") for p in prompts]
        want.append(alone(engine, plain, PARAMS))
        got = batched("sched-batch")
        for (_, have), ref in zip(got, want, strict=True):
            assert have.tokens == ref.tokens, phase
            assert have.final.extra_usage == ref.final.extra_usage, phase
        cached = [have.final.extra_usage["cached_tokens"] for _, have in got[:3]]
        if phase == "cold":
            # New documents are computed in their reusable form inside the request and blended (only
            # the prefix came from the store), so the write-back needs no model work: no step spent
            # budget on it, and its events ended only once the caches were stored.
            assert cached == [prefix] * 3
            log = scheduler.step_log()
            assert not [w for r in log for w in r.written if w[0] in {i for i, _ in got[:3]} and w[1] > 0]
            assert scheduler.stats().writing_back == 0
            for p in prompts:
                doc_ids = [piece.ids for piece in p.pieces[1:-1]]
                assert all(engine.chunk_cache.warm_many(doc_ids, p.pieces[0].ids, "sched-batch"))
        else:
            assert all(
                c > 0.8 * (len(p) - len(p.pieces[-1].ids)) for c, p in zip(cached, prompts, strict=True)
            )
            assert all(have.final.extra_usage["recomputed_tokens"] > 0 for _, have in got[:3])


def test_a_blended_request_reuses_what_an_answered_one_is_still_storing(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    # Mode prefix stores its pieces' exact versions and computes their base versions after the
    # answer, a write-back with model work in it.
    question, docs = suite_docs(11, 2, 40)
    prompt = engine.build_prompt(question, docs, None)
    scheduler = new_scheduler(max_batch_size=4, prefill_chunk_tokens=2)
    first_id, first = submit(scheduler, prompt, PARAMS, PREFIX, "sched-follow")
    events = first.events()
    head: list[GenerationEvent] = []
    for event in events:
        head.append(event)
        if isinstance(event, FinishEvent):
            break
    assert isinstance(head[-1], FinishEvent) and head[-1].extra_usage["cached_tokens"] == 0
    # Answered, its documents not yet stored (a small budget makes the write-back take several steps).
    second_id, second = submit(scheduler, prompt, PARAMS, PREFIX, "sched-follow")
    assert scheduler.stats().writing_back == 1
    assert list(events) == []
    got = drain(second)
    assert got.final.extra_usage["cached_tokens"] >= len(prompt) - len(prompt.pieces[-1].ids)
    log = scheduler.step_log()
    last_store = max(r.index for r in log if any(i == first_id for i, _ in r.written))
    first_prefill = min(r.index for r in log if any(i == second_id for i, _ in r.prefilled))
    assert first_prefill > last_store


def test_a_request_sent_as_a_blended_answer_ends_finds_its_pieces_stored(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    # Back to back while another request keeps the scheduler busy: the cold request's pieces are
    # stored when its answer ends, not in a background slice that a busy scheduler would put off.
    question, docs = suite_docs(13, 2, 40)
    prompt = engine.build_prompt(question, docs, None)
    scheduler = new_scheduler(max_batch_size=4)
    stop, busy = threading.Event(), ThreadSink()
    scheduler.submit(
        engine.build_prompt("Count from one to one hundred in words.", None, None),
        SamplingParams(max_tokens=4000),
        busy,
        cancel=stop,
    )
    busy_events = busy.events()
    next(busy_events)  # it is decoding: every step from now on is interactive
    try:
        cold_events = submit(scheduler, prompt, PARAMS, CACHEBLEND, "sched-b2b")[1].events()
        head: list[GenerationEvent] = []
        while not head or not isinstance(head[-1], FinishEvent):
            head.append(next(cold_events))
        cold = outcome(head)
        # Sent the moment the final event arrives, as a client does once its answer is complete.
        warm = drain(submit(scheduler, prompt, PARAMS, CACHEBLEND, "sched-b2b")[1])
        list(cold_events)
        assert isinstance(next(busy_events), TokenEvent), "the busy request ended early"
    finally:
        stop.set()
        list(busy_events)
    assert cold.final.extra_usage["cached_tokens"] <= len(prompt.pieces[0].ids)  # the prefix at most
    docs_tokens = len(prompt) - len(prompt.pieces[-1].ids)
    assert warm.final.extra_usage["cached_tokens"] == docs_tokens
