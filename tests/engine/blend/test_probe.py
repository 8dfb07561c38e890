"""The probe mode: question-driven selection against a plain prefill of the same token ids."""

from __future__ import annotations

import torch

from engine.blend.options import BlendOptions
from engine.blend.probe import pick, widen
from engine.prompt import Prompt
from engine.torch_engine import TorchEngine
from tests.engine.blend.warm import warm


def _full_logits(engine: TorchEngine, prompt: Prompt) -> torch.Tensor:
    ids = torch.tensor(prompt.ids)
    return engine.model.forward(ids, engine.model.new_cache(len(ids)))


def test_probe_ratio_one_equals_full_prefill(engine: TorchEngine, rag_prompt: Prompt) -> None:
    warm(engine, rag_prompt, "p-r1")
    result = engine.blender.prefill(
        rag_prompt, BlendOptions(mode="probe", ratio=1.0), len(rag_prompt), "p-r1"
    )
    want = _full_logits(engine, rag_prompt)
    assert result.ratio_used == 1.0 and result.moved_tokens > 0
    assert (result.logits - want).abs().max().item() < 2e-3
    assert result.probe_ms > 0


def test_probe_recomputes_its_ratio_and_beats_plain_reuse(engine: TorchEngine, rag_prompt: Prompt) -> None:
    warm(engine, rag_prompt, "p-r")
    want = torch.log_softmax(_full_logits(engine, rag_prompt), -1)

    def kl(opts: BlendOptions) -> tuple[float, float]:
        r = engine.blender.prefill(rag_prompt, opts, len(rag_prompt), "p-r")
        got = torch.log_softmax(r.logits, -1)
        return float((want.exp() * (want - got)).sum()), r.ratio_used

    reuse, _ = kl(BlendOptions(mode="reuse"))
    probe, used = kl(BlendOptions(mode="probe", ratio=0.3))
    assert abs(used - 0.3) < 0.02
    assert probe < reuse


def test_adaptive_ratio_stays_within_floor_and_ceiling(engine: TorchEngine, rag_prompt: Prompt) -> None:
    warm(engine, rag_prompt, "p-a")
    strict = BlendOptions(mode="probe", ratio=0.4, min_ratio=0.05, error_target=1e-6)
    loose = BlendOptions(mode="probe", ratio=0.4, min_ratio=0.05, error_target=0.99)
    hard = engine.blender.prefill(rag_prompt, strict, len(rag_prompt), "p-a").ratio_used
    easy = engine.blender.prefill(rag_prompt, loose, len(rag_prompt), "p-a").ratio_used
    assert 0.39 <= hard <= 0.41  # a target no selection meets: the ceiling
    assert 0.04 <= easy <= 0.07  # a target any selection meets: the floor


def test_pick_keeps_sinks_and_follows_chunk_relevance() -> None:
    # two chunks of 20 tokens; the question reads the second chunk only
    scores = torch.cat([torch.full((20,), 0.001), torch.linspace(0.1, 1.0, 20)])
    spans = [(100, 120), (120, 140)]
    chosen = pick(scores, spans, 10, sink=2, gamma=1.0, width=0)
    assert {0, 1, 20, 21} <= set(chosen.tolist())  # each chunk's first two tokens
    rest = [i for i in chosen.tolist() if i not in (0, 1, 20, 21)]
    assert len(chosen) == 10 and all(i >= 34 for i in rest)  # the best-scoring tokens of chunk 2


def test_widen_ranks_neighbours_of_strong_tokens_inside_their_chunk() -> None:
    scores = torch.tensor([0.0, 0.0, 5.0, 0.0, 0.0, 0.0])
    bounds = torch.tensor([0, 0, 0, 1, 1, 1])
    key = widen(scores, bounds, 1)
    assert key[1] > 4 and key[3] < 1  # the neighbour in the same chunk, not across the boundary
