"""The vLLM backend with vLLM's prefix caching on (the default): a tenant's repeated prompt is served
from vLLM's cache, also under a blend mode while its pieces are not stored yet; blended blocks and
other tenants' blocks are never handed out. One real vLLM engine for the module, float32."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from engine.blend.options import BlendOptions
from engine.config import EngineConfig
from engine.prompt import Prompt
from engine.torch_engine import TorchEngine
from tests.engine.vllm.vllm_fixtures import VLLM_OPTIONS, backend_greedy, dtype_of, rag_prompts
from tests.texts import passages_for

pytestmark = pytest.mark.vllm

if TYPE_CHECKING:
    from engine.vllm.backend import VllmEngine

STEPS = 12


@pytest.fixture(scope="module")
def backend(engine: TorchEngine) -> Iterator[VllmEngine]:
    from engine.vllm.backend import VllmEngine

    options = dataclasses.replace(VLLM_OPTIONS, prefix_caching=True)
    cfg = EngineConfig(
        model_dir=engine.cfg.model_dir, dtype=dtype_of(engine), num_threads=2, max_context=4096, vllm=options
    )
    backend = VllmEngine(cfg)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def prompt(engine: TorchEngine) -> Prompt:
    return rag_prompts(engine, count=1, passages=3)[0]


def test_repeats_hit_per_tenant_and_blends_never_share(
    backend: VllmEngine, prompt: Prompt, engine: TorchEngine
) -> None:
    full = BlendOptions(mode="full")
    # tenant "b" has the chunk caches (ingestion's warm-up) but has never sent this prompt
    backend.chunk_kv.warm_up([f"{p.title}\n{p.text}" for p in passages_for(0, 3)], "b")
    _, _, blended = backend_greedy(backend, prompt, STEPS, BlendOptions(mode="cacheblend", ratio=0.15), "b")
    assert blended.extra_usage["cached_tokens"] > len(prompt) // 2  # it blended the stored pieces

    # the blended blocks are not reused: the first plain prefill of tenant "b" finds nothing
    reference, _, first = backend_greedy(backend, prompt, STEPS, full, "b")
    assert first.extra_usage["cached_tokens"] == 0
    # its own blocks are, for the same tenant, with the same tokens
    tokens, _, again = backend_greedy(backend, prompt, STEPS, full, "b")
    assert again.extra_usage["cached_tokens"] > len(prompt) // 2 and tokens == reference
    # another tenant finds nothing
    tokens, _, other = backend_greedy(backend, prompt, STEPS, full, "c")
    assert other.extra_usage["cached_tokens"] == 0 and tokens == reference

    # tenant "c" asks again under the default blend mode before its pieces are stored: vLLM prefills
    # the prompt whole and serves it from its cache, exactly (no blend), and the pieces are stored
    tokens, _, repeat = backend_greedy(backend, prompt, STEPS, BlendOptions(mode="probe"), "c")
    assert repeat.extra_usage["cached_tokens"] > len(prompt) // 2
    assert repeat.extra_usage["recomputed_tokens"] == 0 and tokens == reference
    _, _, warm = backend_greedy(backend, prompt, STEPS, BlendOptions(mode="probe"), "c")
    assert warm.extra_usage["recomputed_tokens"] > 0  # now blended from the stored pieces
