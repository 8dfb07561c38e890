"""The n sequences of one request share one prefill (blended or not) and decode side by side."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine.blend.options import BlendOptions
from engine.event_sink import ThreadSink
from engine.events import GenerationEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from engine.scheduler import Scheduler
from engine.torch_engine import TorchEngine
from tests.engine.conftest import SchedulerFactory
from tests.engine.scheduling import Outcome, alone, drain, outcome, suite_docs

GREEDY = SamplingParams(max_tokens=12)
CACHEBLEND = BlendOptions(mode="cacheblend", ratio=0.15)


def sampled(seed: int) -> SamplingParams:
    return SamplingParams(max_tokens=12, temperature=0.9, top_p=0.95, seed=seed)


def submit_group(
    scheduler: Scheduler,
    prompt: Prompt,
    params: list[SamplingParams],
    blend: BlendOptions | None = None,
    salt: str = "",
    cancels: list[threading.Event] | None = None,
) -> tuple[list[int], list[ThreadSink]]:
    sinks = [ThreadSink() for _ in params]
    cancels = cancels or [threading.Event() for _ in params]
    ids = scheduler.submit_group(prompt, params, list(sinks), cancels, blend, salt)
    return ids, sinks


@pytest.fixture(scope="module")
def prompt(engine: TorchEngine) -> Prompt:
    return engine.build_prompt("Name three rivers in Europe and the seas they flow into.", None, None)


def prefill_log(scheduler: Scheduler) -> set[int]:
    return {i for r in scheduler.step_log() for i, _ in r.prefilled}


def test_greedy_forks_all_answer_as_one_request_alone_with_one_prefill(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompt: Prompt
) -> None:
    want = alone(engine, prompt, GREEDY)
    scheduler = new_scheduler(max_batch_size=4)
    ids, sinks = submit_group(scheduler, prompt, [GREEDY] * 3)
    got = [drain(s) for s in sinks]
    for have in got:
        assert have.tokens == want.tokens
        assert have.text == want.text
        assert have.final.finish_reason == want.final.finish_reason
        assert have.final.prompt_tokens == len(prompt)
    stats = scheduler.stats()
    assert stats.tokens_in == len(prompt)  # the prompt was computed once for the three
    assert stats.tokens_out == 3 * want.final.completion_tokens
    assert prefill_log(scheduler) == {ids[0]}  # prefill work ran for the first sequence only
    # the three decoded in one batched forward
    assert any(set(ids) <= set(r.decoded) for r in scheduler.step_log())
    assert (stats.batch_size, stats.kv_rows) == (0, 0)


def test_seeded_fork_i_answers_as_a_request_with_its_own_seed(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompt: Prompt
) -> None:
    params = [sampled(700 + i) for i in range(3)]
    want = [alone(engine, prompt, p) for p in params]
    assert len({tuple(w.tokens) for w in want}) > 1, "the seeds draw different answers"
    scheduler = new_scheduler(max_batch_size=8)
    other = ThreadSink()
    scheduler.submit(engine.build_prompt("Hi!", None, None), GREEDY, other)  # a neighbour in the batch
    _, sinks = submit_group(scheduler, prompt, params)
    assert [drain(s).tokens for s in sinks] == [w.tokens for w in want]
    drain(other)
    assert scheduler.stats().tokens_in == len(prompt) + len(engine.build_prompt("Hi!", None, None))


def test_blended_forks_share_one_blend_and_one_write_back(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    question, docs = suite_docs(12, 2, 40)
    prompt = engine.build_prompt(question, docs, None)
    for salt in ("forks-ref", "forks-batch"):  # the shared system prefix is cached under both salts
        alone(engine, engine.build_prompt("Warm up.", ["A short note."], None), GREEDY, CACHEBLEND, salt)
    scheduler = new_scheduler(max_batch_size=4, prefill_chunk_tokens=32)
    for phase in ("cold", "warm"):
        want = alone(engine, prompt, GREEDY, CACHEBLEND, "forks-ref")
        ids, sinks = submit_group(scheduler, prompt, [GREEDY] * 2, CACHEBLEND, "forks-batch")
        got = [drain(s) for s in sinks]
        for have in got:
            assert have.tokens == want.tokens, phase
            assert have.final.extra_usage == want.final.extra_usage, phase
        assert ids[1] not in prefill_log(scheduler), phase
        assert ids[1] not in {i for r in scheduler.step_log() for i, _ in r.written}, phase
        assert scheduler.stats().writing_back == 0
    doc_ids = [piece.ids for piece in prompt.pieces[1:-1]]
    assert all(engine.chunk_cache.warm_many(doc_ids, prompt.pieces[0].ids, "forks-batch"))


def test_cancelling_the_request_ends_every_fork(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompt: Prompt
) -> None:
    long = SamplingParams(max_tokens=200, ignore_eos=True)
    scheduler = new_scheduler(max_batch_size=4)
    cancels = [threading.Event() for _ in range(3)]
    _, sinks = submit_group(scheduler, prompt, [long] * 3, cancels=cancels)
    streams = [s.events() for s in sinks]
    heads: list[list[GenerationEvent]] = [[] for _ in sinks]
    for head, events in zip(heads, streams, strict=True):  # every fork is decoding
        while sum(isinstance(e, TokenEvent) for e in head) < 2:
            head.append(next(events))
    for cancel in cancels:
        cancel.set()
    got = [outcome(head + list(events)) for head, events in zip(heads, streams, strict=True)]
    assert [o.final.finish_reason for o in got] == ["cancelled"] * 3
    assert all(o.final.completion_tokens < 200 for o in got)
    assert scheduler.stats().batch_size == 0


def test_a_request_cancelled_before_its_prefill_never_runs_it(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompt: Prompt
) -> None:
    scheduler = new_scheduler(max_batch_size=4)
    cancels = [threading.Event() for _ in range(2)]
    for cancel in cancels:
        cancel.set()
    ids, sinks = submit_group(scheduler, prompt, [GREEDY] * 2, cancels=cancels)
    got = [drain(s) for s in sinks]
    assert [o.final.finish_reason for o in got] == ["cancelled"] * 2
    assert scheduler.stats().tokens_in == 0
    assert not prefill_log(scheduler) & set(ids)


def test_a_fork_cancelled_alone_leaves_the_others_answering(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompt: Prompt
) -> None:
    want = alone(engine, prompt, GREEDY)
    scheduler = new_scheduler(max_batch_size=4)
    cancels = [threading.Event() for _ in range(3)]
    cancels[0].set()  # the sequence whose prefill the others share
    _, sinks = submit_group(scheduler, prompt, [GREEDY] * 3, cancels=cancels)
    got = [drain(s) for s in sinks]
    assert got[0].final.finish_reason == "cancelled" and got[0].tokens == []
    assert [o.tokens for o in got[1:]] == [want.tokens] * 2
    assert scheduler.stats().tokens_in == len(prompt)


def test_a_request_wider_than_the_free_slots_waits_for_them(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompt: Prompt
) -> None:
    scheduler = new_scheduler(max_batch_size=3)
    first = ThreadSink()
    first_id = scheduler.submit(engine.build_prompt("Hi!", None, None), GREEDY, first)
    ids, sinks = submit_group(scheduler, prompt, [GREEDY] * 3)
    want = alone(engine, prompt, GREEDY)
    assert [drain(s).tokens for s in sinks] == [want.tokens] * 3
    drain(first)
    # never more sequences in a decode step than the batch holds
    assert max(len(r.decoded) for r in scheduler.step_log()) <= 3
    assert not any(first_id in r.decoded and ids[0] in r.decoded for r in scheduler.step_log())
    with pytest.raises(ValueError, match="does not fit"):
        submit_group(scheduler, prompt, [GREEDY] * 4)


def test_engine_submit_jobs_shares_the_prefill(engine: TorchEngine, prompt: Prompt) -> None:
    """The route path: `submit_jobs` on the event loop, one job per sequence."""
    assert engine.scheduler is not None
    params = [sampled(31 + i) for i in range(3)]
    want = [alone(engine, prompt, p) for p in params]
    before = engine.scheduler.stats().tokens_in

    async def main() -> list[Outcome]:
        jobs = engine.submit_jobs(prompt, params)
        assert jobs is not None and len(jobs) == 3

        async def consume(job: object) -> Outcome:
            return outcome([e async for e in job.events()])  # type: ignore[attr-defined]

        return await asyncio.gather(*(consume(j) for j in jobs))

    got = asyncio.run(main())
    assert [o.tokens for o in got] == [w.tokens for w in want]
    assert engine.scheduler.stats().tokens_in - before == len(prompt)
