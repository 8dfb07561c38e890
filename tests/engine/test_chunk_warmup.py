"""Warming chunk caches ahead of a question: the later prompt finds every piece but the question."""

from __future__ import annotations

from engine.blend.options import BlendOptions
from engine.chunk_warmup import warm_chunks
from engine.torch_engine import TorchEngine

TEXTS = ["The Nile flows into the Mediterranean Sea.", "The Amazon carries the most water.", "  "]


def test_warmed_chunks_are_reused_by_a_later_prompt(engine: TorchEngine) -> None:
    report = warm_chunks(engine.blender, engine.build_prompt, TEXTS, salt="warm-a", batch=1)
    assert (report.texts, report.computed, report.already_warm) == (2, 2, 0)
    again = warm_chunks(engine.blender, engine.build_prompt, TEXTS, salt="warm-a")
    assert (again.computed, again.already_warm) == (0, 2)

    prompt = engine.build_prompt("Where does the Nile end?", list(reversed(TEXTS[:2])), None)
    result = engine.blender.prefill(prompt, BlendOptions(mode="reuse"), len(prompt) + 1, "warm-a")
    query_tokens = len(prompt.pieces[-1].ids)
    assert result.cached_tokens == len(prompt) - query_tokens

    other = engine.blender.prefill(prompt, BlendOptions(mode="reuse"), len(prompt) + 1, "warm-b")
    assert other.cached_tokens == 0  # another tenant's salt finds nothing
