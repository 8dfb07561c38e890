"""Log-probabilities of produced tokens (batched and alone) and scoring a given prompt."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from engine.blend.options import BlendOptions
from engine.events import FinishEvent, TokenEvent
from engine.logprobs import token_logprobs
from engine.prompt import Prompt, PromptPiece
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from tests.engine.conftest import SchedulerFactory
from tests.engine.scheduling import alone, drain, submit, suite_docs

GREEDY_LP = SamplingParams(max_tokens=10, logprobs=3)


def test_token_logprobs_are_the_log_softmax() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 0.0, 5.0, -0.5]])
    out = token_logprobs(logits, [1, 2], 2)
    expected = torch.log_softmax(logits, -1)
    assert math.isclose(out[0].logprob, float(expected[0, 1]), rel_tol=1e-6)
    assert [t for t, _ in out[0].top] == [0, 1] and [t for t, _ in out[1].top] == [2, 0]
    assert token_logprobs(logits, [0, 0], 0)[1].top == ()


def test_batched_logprobs_match_the_request_alone(
    new_scheduler: SchedulerFactory, engine: TorchEngine
) -> None:
    question, docs = suite_docs(2, 2, 40)
    prompts = [
        engine.build_prompt("Name three rivers.", None, None),
        engine.build_prompt(question, docs, None),
    ]
    scheduler = new_scheduler(max_batch_size=4)
    plain = SamplingParams(max_tokens=10)
    sinks = [submit(scheduler, p, GREEDY_LP)[1] for p in prompts] + [submit(scheduler, prompts[0], plain)[1]]
    got = [drain(s) for s in sinks]
    for prompt, batched in zip(prompts, got, strict=False):
        ref = alone(engine, prompt, GREEDY_LP)
        assert batched.tokens == ref.tokens
        lps, ref_lps = batched.final.logprobs, ref.final.logprobs
        assert lps is not None and ref_lps is not None and len(lps) == len(ref.tokens)
        assert [lp.token for lp in lps] == ref.tokens
        for a, b in zip(lps, ref_lps, strict=True):
            assert abs(a.logprob - b.logprob) < 1e-3 and len(a.top) == 3
            assert a.top[0][0] == a.token and abs(a.top[0][1] - a.logprob) < 1e-6  # greedy: the best
            assert a.logprob <= 0.0
    assert got[2].final.logprobs is None  # not asked for: not computed


def test_streamed_events_carry_every_logprob_once(engine: TorchEngine) -> None:
    params = SamplingParams(max_tokens=12, logprobs=0, temperature=0.8, seed=7, stop=("\n",))
    events = list(engine.generate(engine.build_prompt("Count to five.", None, None), params))
    carried = [lp for e in events if isinstance(e, TokenEvent) for lp in e.logprobs]
    final = events[-1]
    assert isinstance(final, FinishEvent) and final.logprobs is not None
    assert carried == list(final.logprobs) and len(carried) == final.completion_tokens


def test_full_scoring_agrees_with_the_generation(engine: TorchEngine) -> None:
    prompt = engine.build_prompt("Where is the Eiffel Tower?", None, None)
    ref = alone(engine, prompt, GREEDY_LP)
    answer = PromptPiece("query", tuple(ref.tokens), ref.text)
    scored = engine.score(Prompt((*prompt.pieces, answer)), None, "", 3)
    assert len(scored.logprobs) == len(prompt) + len(ref.tokens) and scored.logprobs[0] is None
    tail = scored.logprobs[len(prompt) :]
    assert ref.final.logprobs is not None
    for got, want in zip(tail, ref.final.logprobs, strict=True):
        assert got is not None and got.token == want.token and abs(got.logprob - want.logprob) < 1e-3


def test_blended_scoring_scores_the_query_under_the_blend(engine: TorchEngine) -> None:
    question, docs = suite_docs(3, 3, 50)
    base = engine.build_prompt(question, docs, None)
    answer = engine.prompts.encode(" The answer is in the second passage.")
    query = base.pieces[-1]
    prompt = Prompt((*base.pieces[:-1], replace(query, ids=query.ids + answer)))
    n_query = len(query.ids) + len(answer)
    full = engine.score(prompt, BlendOptions(mode="full"), "score-test", 0)
    reuse = engine.score(prompt, BlendOptions(mode="reuse"), "score-test", 0)
    again = engine.score(prompt, BlendOptions(mode="reuse"), "score-test", 0)  # its pieces now cached
    assert all(x is not None for x in full.logprobs[1:])
    context = len(prompt) - n_query
    assert all(x is None for x in reuse.logprobs[: context + 1])
    assert all(x is not None for x in reuse.logprobs[context + 1 :])
    assert again.extra_usage["cached_tokens"] > 0
    tail_full = [x.logprob for x in full.logprobs[-len(answer) :] if x is not None]
    tail_reuse = [x.logprob for x in again.logprobs[-len(answer) :] if x is not None]
    assert len(tail_full) == len(tail_reuse) == len(answer)
    # the same tokens scored in two contexts: close (the same documents) but not bitwise the same
    assert tail_full != tail_reuse
    assert abs(sum(tail_full) - sum(tail_reuse)) < 0.5 * len(answer)


def test_sampling_params_bound_logprobs() -> None:
    with pytest.raises(ValueError, match="logprobs"):
        SamplingParams(logprobs=21)


def test_chunked_scoring_equals_one_forward(engine: TorchEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.scoring as scoring

    prompt = engine.build_prompt("Name three rivers in Europe and the seas they flow into.", None, None)
    whole = scoring.score_prompt(engine.blender, prompt, None, "", 2)
    monkeypatch.setattr(scoring, "SCORE_CHUNK", 7)
    chunked = scoring.score_prompt(engine.blender, prompt, None, "", 2)
    assert len(whole.logprobs) == len(chunked.logprobs) == len(prompt)
    for a, b in zip(whole.logprobs[1:], chunked.logprobs[1:], strict=True):
        assert a is not None and b is not None and a.token == b.token and abs(a.logprob - b.logprob) < 1e-3


def test_a_vanishing_top_p_keeps_the_most_likely_token(engine: TorchEngine) -> None:
    params = SamplingParams(max_tokens=3, temperature=1.0, top_p=5e-324, seed=1)
    events = list(engine.generate(engine.build_prompt("", None, None), params))
    greedy = list(engine.generate(engine.build_prompt("", None, None), SamplingParams(max_tokens=3)))
    final, reference = events[-1], greedy[-1]
    assert isinstance(final, FinishEvent) and isinstance(reference, FinishEvent)
    assert final.text == reference.text
