"""Batched decoding gives every request exactly the tokens it gets alone."""

from __future__ import annotations

import asyncio

import pytest

from engine.events import FinishEvent, GenerationEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from tests.engine.conftest import SchedulerFactory
from tests.engine.scheduling import Outcome, alone, drain, outcome, submit, suite_docs

GREEDY = SamplingParams(max_tokens=16)


@pytest.fixture(scope="module")
def prompts(engine: TorchEngine) -> list[Prompt]:
    """Prompts of very different lengths (a few tokens to a few hundred)."""
    question, docs = suite_docs(5, 3, 60)
    out = [
        engine.build_prompt("Hi!", None, None),
        engine.build_prompt("Name three rivers in Europe and the seas they flow into.", None, None),
        engine.build_prompt(question, docs[:1], None),
        engine.build_prompt("Write a short poem about a lighthouse keeper.", None, "You are a poet."),
        engine.build_prompt(question, docs, None),
    ]
    assert len({len(p) for p in out}) == len(out)
    return out


@pytest.fixture(scope="module")
def references(engine: TorchEngine, prompts: list[Prompt]) -> list[Outcome]:
    return [alone(engine, p, GREEDY) for p in prompts]


def test_concurrent_greedy_requests_match_their_runs_alone(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompts: list[Prompt], references: list[Outcome]
) -> None:
    scheduler = new_scheduler(max_batch_size=8)
    sinks = [submit(scheduler, p, GREEDY)[1] for p in prompts]
    got = [drain(s) for s in sinks]
    for want, have in zip(references, got, strict=True):
        assert have.tokens == want.tokens
        assert have.text == want.text
        assert have.final.finish_reason == want.final.finish_reason
        assert have.final.completion_tokens == want.final.completion_tokens
        assert have.final.prompt_tokens == want.final.prompt_tokens
    # They really shared forwards: some step decoded every request still running in one batch.
    assert max(len(r.decoded) for r in scheduler.step_log()) >= 4
    stats = scheduler.stats()
    assert stats.tokens_in == sum(len(p) for p in prompts)
    assert stats.tokens_out == sum(o.final.completion_tokens for o in got)
    assert (stats.batch_size, stats.kv_rows, stats.kv_bytes) == (0, 0, 0)


def test_request_joining_midway_leaves_the_running_one_unchanged(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompts: list[Prompt], references: list[Outcome]
) -> None:
    scheduler = new_scheduler(max_batch_size=4)
    first_id, first = submit(scheduler, prompts[1], GREEDY)
    events = first.events()
    head: list[GenerationEvent] = []
    while sum(isinstance(e, TokenEvent) for e in head) < 4:
        head.append(next(events))
    late = [submit(scheduler, p, GREEDY) for p in (prompts[4], prompts[0])]
    got_first = outcome(head + list(events))
    assert got_first.tokens == references[1].tokens
    assert drain(late[0][1]).tokens == references[4].tokens
    assert drain(late[1][1]).tokens == references[0].tokens
    log = scheduler.step_log()
    alone_steps = [r for r in log if r.decoded == (first_id,)]
    shared_steps = [r for r in log if first_id in r.decoded and len(r.decoded) > 1]
    assert len(alone_steps) >= 3 and shared_steps, "the first request decoded alone, then with the others"


def test_server_jobs_share_the_batch(
    engine: TorchEngine, prompts: list[Prompt], references: list[Outcome]
) -> None:
    """The route path: `submit_job` on the event loop, events consumed concurrently as the server does."""

    async def consume(prompt: Prompt) -> Outcome:
        job = engine.submit_job(prompt, GREEDY)
        assert job is not None
        return outcome([e async for e in job.events()])

    async def main() -> list[Outcome]:
        return await asyncio.gather(*(consume(p) for p in prompts[:3]))

    got = asyncio.run(main())
    assert [o.tokens for o in got] == [r.tokens for r in references[:3]]
    assert all(isinstance(o.final, FinishEvent) for o in got)


def test_seeded_sampling_is_reproducible_under_batching(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompts: list[Prompt]
) -> None:
    sampled = SamplingParams(max_tokens=16, temperature=0.9, top_p=0.9, seed=1234)
    other_seed = SamplingParams(max_tokens=16, temperature=0.9, top_p=0.9, seed=99)
    want = alone(engine, prompts[3], sampled)
    scheduler = new_scheduler(max_batch_size=8)
    sinks = [
        submit(scheduler, prompts[1], GREEDY)[1],
        submit(scheduler, prompts[3], sampled)[1],
        submit(scheduler, prompts[3], other_seed)[1],
        submit(scheduler, prompts[4], sampled)[1],
        submit(scheduler, prompts[3], sampled)[1],
    ]
    got = [drain(s) for s in sinks]
    assert got[1].tokens == want.tokens
    assert got[4].tokens == want.tokens  # same seed, same prompt, other batch position
    assert got[2].tokens != want.tokens  # the seed matters: different draws


def test_stop_strings_and_eos_end_a_sequence_as_alone(
    new_scheduler: SchedulerFactory, engine: TorchEngine, prompts: list[Prompt]
) -> None:
    free = alone(engine, prompts[1], SamplingParams(max_tokens=24))
    stop_word = free.text.split()[2]
    params = SamplingParams(max_tokens=24, stop=(stop_word,))
    want = alone(engine, prompts[1], params)
    assert want.final.finish_reason == "stop" and stop_word not in want.text
    scheduler = new_scheduler(max_batch_size=4)
    sinks = [submit(scheduler, prompts[1], params)[1], submit(scheduler, prompts[4], GREEDY)[1]]
    got = drain(sinks[0])
    drain(sinks[1])
    assert (got.text, got.final.finish_reason, got.final.completion_tokens) == (
        want.text,
        "stop",
        want.final.completion_tokens,
    )
