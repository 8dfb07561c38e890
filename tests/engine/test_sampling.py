from __future__ import annotations

import pytest
import torch

from engine.sampling import Sampler, SamplingParams, top_p_filter


def test_greedy_picks_argmax() -> None:
    logits = torch.tensor([0.1, 3.0, -1.0, 2.9])
    assert Sampler(SamplingParams(temperature=0.0))(logits) == 1


def test_same_seed_same_tokens_and_different_seed_differs() -> None:
    logits = torch.zeros(1000)
    draw = lambda seed: [Sampler(SamplingParams(temperature=1.0, seed=seed))(logits) for _ in range(1)]  # noqa: E731
    a = Sampler(SamplingParams(temperature=1.0, seed=7))
    b = Sampler(SamplingParams(temperature=1.0, seed=7))
    c = Sampler(SamplingParams(temperature=1.0, seed=8))
    seq_a = [a(logits) for _ in range(20)]
    assert seq_a == [b(logits) for _ in range(20)]
    assert seq_a != [c(logits) for _ in range(20)]
    assert draw(1) == draw(1)


def test_top_p_keeps_only_the_nucleus() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    kept = top_p_filter(probs.clone(), 0.7)
    assert kept[2] == 0 and kept[3] == 0
    assert torch.allclose(kept[:2], torch.tensor([0.625, 0.375]))
    sampler = Sampler(SamplingParams(temperature=1.0, top_p=0.01, seed=3))
    logits = torch.tensor([1.0, 5.0, 2.0])
    assert {sampler(logits) for _ in range(50)} == {1}


@pytest.mark.parametrize("kwargs", [{"max_tokens": 0}, {"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_invalid_params_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)  # type: ignore[arg-type]
