"""APE-style temperature on the reused rows of moved chunks (BlendOptions.reuse_temperature)."""

from __future__ import annotations

import pytest
import torch

from engine.blend.options import PROBE_TEMPERATURE, BlendOptions
from engine.prompt import Prompt
from engine.torch_engine import TorchEngine
from tests.engine.blend.warm import warm


def test_temperature_changes_reuse_and_leaves_the_store_alone(
    engine: TorchEngine, rag_prompt: Prompt
) -> None:
    warm(engine, rag_prompt, "rt-1")
    before = engine.blender.lookup(rag_prompt, "rt-1")
    plain = engine.blender.prefill(rag_prompt, BlendOptions(mode="reuse"), len(rag_prompt), "rt-1")
    tempered = engine.blender.prefill(
        rag_prompt, BlendOptions(mode="reuse", reuse_temperature=0.8), len(rag_prompt), "rt-1"
    )
    assert (tempered.logits - plain.logits).abs().max().item() > 1e-2
    # the moved chunks' keys in the request's KV are scaled by 1 / T; the stored chunks are not
    moved = [lk for lk in before if lk.exact is None and lk.base is not None]
    assert moved
    lk = moved[0]
    layer = len(engine.model.layers) - 1
    got = tempered.kv.k[layer][0, :, lk.start : lk.end].float()
    want = plain.kv.k[layer][0, :, lk.start : lk.end].float() / 0.8
    assert torch.allclose(got, want, rtol=2e-2, atol=2e-2)
    after = engine.blender.lookup(rag_prompt, "rt-1")
    for a, b in zip(before, after, strict=True):
        if a.base is not None and b.base is not None:
            assert torch.equal(a.base.k, b.base.k)


def test_probe_with_temperature_at_ratio_one_equals_full_prefill(
    engine: TorchEngine, rag_prompt: Prompt
) -> None:
    warm(engine, rag_prompt, "rt-2")
    opts = BlendOptions(mode="probe", ratio=1.0, reuse_temperature=0.8)
    result = engine.blender.prefill(rag_prompt, opts, len(rag_prompt), "rt-2")
    ids = torch.tensor(rag_prompt.ids)
    want = engine.model.forward(ids, engine.model.new_cache(len(ids)))
    assert (result.logits - want).abs().max().item() < 2e-3  # every row recomputed: no scaled key is left


@pytest.mark.parametrize("value", [0.0, 0.2, 5.0])
def test_out_of_range_temperature_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="reuse_temperature"):
        BlendOptions(mode="probe", reuse_temperature=value)


def test_cacheblend_refuses_a_temperature() -> None:
    with pytest.raises(ValueError, match="reuse_temperature"):
        BlendOptions(mode="cacheblend", reuse_temperature=0.9)


def test_only_probe_defaults_to_a_temperature() -> None:
    assert BlendOptions(mode="probe").temperature == PROBE_TEMPERATURE != 1.0
    for mode in ("reuse", "cachecraft", "cacheblend", "full", "prefix"):
        assert BlendOptions(mode=mode).temperature == 1.0
    assert BlendOptions(mode="probe", reuse_temperature=1.0).temperature == 1.0


def test_default_probe_differs_from_probe_without_temperature(
    engine: TorchEngine, rag_prompt: Prompt
) -> None:
    warm(engine, rag_prompt, "rt-3")
    plain = engine.blender.prefill(
        rag_prompt, BlendOptions(mode="probe", reuse_temperature=1.0), len(rag_prompt), "rt-3"
    )
    default = engine.blender.prefill(rag_prompt, BlendOptions(mode="probe"), len(rag_prompt), "rt-3")
    assert (default.logits - plain.logits).abs().max().item() > 1e-3


def test_temperature_slope_scales_each_moved_chunk_by_where_it_sits(
    engine: TorchEngine, rag_prompt: Prompt
) -> None:
    warm(engine, rag_prompt, "rt-4")
    lookups = engine.blender.lookup(rag_prompt, "rt-4")
    moved = [lk for lk in lookups if lk.exact is None and lk.base is not None]
    assert len(moved) >= 2, "the prompt needs two moved chunks"
    plain = engine.blender.prefill(rag_prompt, BlendOptions(mode="reuse"), len(rag_prompt), "rt-4")
    opts = BlendOptions(mode="reuse", reuse_temperature=1.1, temperature_slope=0.4)
    sloped = engine.blender.prefill(rag_prompt, opts, len(rag_prompt), "rt-4")
    docs_start, docs_end = lookups[0].end, lookups[-1].end
    layer = len(engine.model.layers) - 1
    temperatures = []
    for lk in moved:
        t = opts.chunk_temperature((lk.start - docs_start) / (docs_end - docs_start))
        got = sloped.kv.k[layer][0, :, lk.start : lk.end].float()
        want = plain.kv.k[layer][0, :, lk.start : lk.end].float() / t
        assert torch.allclose(got, want, rtol=2e-2, atol=2e-2)
        temperatures.append(t)
    assert temperatures == sorted(temperatures) and temperatures[0] < temperatures[-1]


def test_a_slope_out_of_range_or_on_cacheblend_is_refused() -> None:
    assert BlendOptions(mode="probe", temperature_slope=0.4).chunk_temperature(1.0) == pytest.approx(1.3)
    with pytest.raises(ValueError, match="temperature_slope"):
        BlendOptions(mode="probe", temperature_slope=-2.0)
    with pytest.raises(ValueError, match="reuse_temperature"):
        BlendOptions(mode="cacheblend", temperature_slope=0.2)
