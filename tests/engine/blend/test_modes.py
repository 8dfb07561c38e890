"""Every blend mode against a plain prefill of the same token ids."""

from __future__ import annotations

import torch

from engine.blend.blender import BlendResult
from engine.blend.options import BlendOptions
from engine.blend.placement import place_entry
from engine.events import FinishEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine
from tests.engine.blend.warm import warm


def _tol(engine: TorchEngine) -> float:
    return 2e-3 if engine.model.dtype == torch.float32 else 0.35


def _full_logits(engine: TorchEngine, prompt: Prompt) -> torch.Tensor:
    ids = torch.tensor(prompt.ids)
    return engine.model.forward(ids, engine.model.new_cache(len(ids)))


def _blend(engine: TorchEngine, prompt: Prompt, opts: BlendOptions, salt: str) -> BlendResult:
    return engine.blender.prefill(prompt, opts, len(prompt) + 1, salt)


def _greedy(
    engine: TorchEngine, prompt: Prompt, opts: BlendOptions | None, salt: str
) -> tuple[str, FinishEvent]:
    events = list(engine.generate(prompt, SamplingParams(max_tokens=12), blend=opts, salt=salt))
    final = events[-1]
    assert isinstance(final, FinishEvent)
    return "".join(e.text for e in events if isinstance(e, TokenEvent)), final


def test_cacheblend_ratio_one_equals_full_prefill(engine: TorchEngine, rag_prompt: Prompt) -> None:
    warm(engine, rag_prompt, "t-r1")
    result = _blend(engine, rag_prompt, BlendOptions(mode="cacheblend", ratio=1.0), "t-r1")
    want = _full_logits(engine, rag_prompt)
    assert result.cached_tokens > 0.9 * len(rag_prompt)
    assert (result.logits - want).abs().max().item() < _tol(engine)
    assert result.logits.argmax() == want.argmax()
    text_full, _ = _greedy(engine, rag_prompt, BlendOptions(mode="full"), "t-r1")
    text_blend, final = _greedy(engine, rag_prompt, BlendOptions(mode="cacheblend", ratio=1.0), "t-r1")
    assert text_blend == text_full
    assert final.extra_usage["cached_tokens"] == result.cached_tokens


def test_full_mode_reuses_nothing(engine: TorchEngine, rag_prompt: Prompt) -> None:
    _, final = _greedy(engine, rag_prompt, BlendOptions(mode="full"), "t-full")
    assert final.extra_usage == {"cached_tokens": 0, "recomputed_tokens": 0}


def test_prefix_with_exact_cached_prefix_equals_full(engine: TorchEngine, rag_prompt: Prompt) -> None:
    opts = BlendOptions(mode="prefix")
    first = _blend(engine, rag_prompt, opts, "t-prefix")
    assert first.cached_tokens == 0
    engine.blender.write_back(rag_prompt, first, opts, "t-prefix")
    second = _blend(engine, rag_prompt, opts, "t-prefix")
    query_len = len(rag_prompt.pieces[-1].ids)
    assert second.cached_tokens == len(rag_prompt) - query_len
    want = _full_logits(engine, rag_prompt)
    assert (second.logits - want).abs().max().item() < _tol(engine)
    assert second.logits.argmax() == want.argmax()


def test_reuse_equals_repositioned_caches_plus_query(engine: TorchEngine, rag_prompt: Prompt) -> None:
    """r = 0: attention over the concatenated, re-positioned chunk caches with only the query computed."""
    warm(engine, rag_prompt, "t-reuse")
    result = _blend(engine, rag_prompt, BlendOptions(mode="reuse"), "t-reuse")
    assert result.recomputed_tokens == 0
    model = engine.model
    lookups = engine.blender.lookup(rag_prompt, "t-reuse")
    kv = model.new_cache(len(rag_prompt))
    for lk in lookups:
        chunk = lk.exact or lk.base
        assert chunk is not None
        place_entry(kv, model.rope, chunk.k, chunk.v, chunk.start, lk.start)
    kv.length = lookups[-1].end
    want = model.forward(torch.tensor(rag_prompt.pieces[-1].ids), kv)
    assert (result.logits - want).abs().max().item() < _tol(engine)


def test_cacheblend_recomputes_the_ratio_of_cached_tokens(engine: TorchEngine, rag_prompt: Prompt) -> None:
    warm(engine, rag_prompt, "t-ratio")
    result = _blend(engine, rag_prompt, BlendOptions(mode="cacheblend", ratio=0.2), "t-ratio")
    lookups = result.lookups
    approximate = sum(lk.end - lk.start for lk in lookups if lk.exact is None)
    assert result.recomputed_tokens == -(-approximate * 2 // 10)  # ceil(0.2 x approximate tokens)
    assert result.cached_tokens == lookups[-1].end


def test_cachecraft_spends_budget_only_on_moved_chunks(engine: TorchEngine, rag_prompt: Prompt) -> None:
    warm(engine, rag_prompt, "t-craft")
    result = _blend(engine, rag_prompt, BlendOptions(mode="cachecraft", ratio=0.3), "t-craft")
    moved = [lk for lk in result.lookups if lk.exact is None]
    assert moved and all(lk.base is not None for lk in moved)
    moved_tokens = sum(lk.end - lk.start for lk in moved)
    assert result.recomputed_tokens == -(-moved_tokens * 3 // 10)  # ceil(0.3 x moved tokens)


def test_tenants_do_not_share_entries(engine: TorchEngine, rag_prompt: Prompt) -> None:
    warm(engine, rag_prompt, "tenant-a")
    other = _blend(engine, rag_prompt, BlendOptions(mode="reuse"), "tenant-b")
    assert other.cached_tokens == 0
