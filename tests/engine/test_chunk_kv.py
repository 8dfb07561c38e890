"""Chunk KV as the engine's capability: warm-up, warm flags, selection costs, one blender per engine."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from cache.memory_tier import MemoryTier
from engine.blend.blender import Blender
from engine.blend.options import BlendOptions
from engine.chunk_kv import ChunkKV
from engine.loaded_model import LoadedModel
from engine.torch_engine import TorchEngine
from tests.texts import rag_docs

T = TypeVar("T")


def loaded_of(engine: TorchEngine) -> LoadedModel:
    """The engine's loaded model, reassembled (no second load of the weights)."""
    return LoadedModel(
        cfg=engine.cfg,
        model_config=engine.model_config,
        dtype_name=engine.dtype_name,
        max_context=engine.max_context,
        tokenizer=engine.tokenizer,
        prompts=engine.prompts,
        eos_ids=engine.eos_ids,
        model=engine.model,
        fingerprint=engine.fingerprint,
    )


def test_the_engine_exposes_its_chunk_kv(engine: TorchEngine) -> None:
    kv = engine.chunk_kv
    assert isinstance(kv, ChunkKV)
    assert kv.blender is engine.blender and kv.cache is engine.chunk_cache and kv.store is engine.store
    assert kv.device == engine.model.device and kv.device.type == "cpu"


def test_warm_up_runs_through_the_backends_runner_and_marks_chunks_warm(engine: TorchEngine) -> None:
    """A runner like the vLLM backend's (one blend thread): warm-up goes through it, named, and a
    later prompt with the texts in another order finds every document warm."""
    names: list[str] = []
    pool = ThreadPoolExecutor(max_workers=1)

    def runner(fn: Callable[[Blender], T], name: str) -> T:
        names.append(name)
        return pool.submit(fn, kv.blender).result()

    kv = ChunkKV(loaded_of(engine), MemoryTier(64 << 20), runner)
    question, docs = rag_docs(1, 3, 40)
    try:
        report = kv.warm_up(docs[:2], "salt-a")
        assert (report.computed, report.already_warm) == (2, 0) and names == ["kv-warmup"]
        prompt = engine.build_prompt(question, [docs[2], docs[1], docs[0]], None)
        assert kv.warm_flags(prompt, "salt-a") == [False, True, True]
        assert kv.warm_flags(prompt, "salt-b") == [False, False, False]  # another tenant's salt
        assert kv.warm_up(docs[:2], "salt-a").computed == 0
    finally:
        pool.shutdown()


def test_selection_costs_follow_the_mode_and_the_prompt(engine: TorchEngine) -> None:
    kv = engine.chunk_kv
    question, docs = rag_docs(2, 2, 30)
    prompt = engine.build_prompt(question, docs, None)
    blend = kv.selection_costs(BlendOptions(mode="cacheblend", check_layer=2), prompt, with_speed=False)
    assert blend.full_layer_share == pytest.approx(3 / engine.model_config.num_layers)
    assert blend.tokens_per_s is None and blend.pair_s == 0.0
    assert blend.prefix_tokens == len(prompt.pieces[0].ids)
    assert blend.query_tokens == len(prompt.pieces[-1].ids)
    craft = kv.selection_costs(BlendOptions(mode="cachecraft"), prompt, with_speed=False)
    assert craft.full_layer_share == 0.0


def test_prefill_speed_is_measured_once_per_engine(engine: TorchEngine) -> None:
    kv = ChunkKV(loaded_of(engine), MemoryTier(1 << 20))
    first = kv.prefill_speed()
    assert first.tokens_per_s > 0 and first.pair_s >= 0
    assert kv.prefill_speed() is first
    question, docs = rag_docs(3, 1, 20)
    costs = kv.selection_costs(BlendOptions(), engine.build_prompt(question, docs, None), with_speed=True)
    assert costs.tokens_per_s == first.tokens_per_s
