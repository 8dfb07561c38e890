"""The probe's selection refinements: layers scored, Cache-Craft weighting, check-layer deviation."""

from __future__ import annotations

import pytest
import torch

from engine.blend.options import BlendOptions
from engine.blend.precompute import ChunkKV
from engine.blend.probe import craft_factor, deviation_factor
from engine.kv_cache import KVCache
from engine.prompt import Prompt
from engine.torch_engine import TorchEngine
from tests.engine.blend.warm import warm

BASE = BlendOptions(mode="probe", ratio=0.15)
REFINED = {
    "probe_from": BlendOptions(mode="probe", ratio=0.15, probe_from=10),
    "craft": BlendOptions(mode="probe", ratio=0.15, craft_weight=1.0),
    "deviation": BlendOptions(mode="probe", ratio=0.15, full_layers=2, deviation_weight=1.0),
}


@pytest.mark.parametrize("name", sorted(REFINED))
def test_refined_probe_at_ratio_one_equals_full_prefill(
    engine: TorchEngine, rag_prompt: Prompt, name: str
) -> None:
    warm(engine, rag_prompt, "pr-1")
    opts = BlendOptions(**{**REFINED[name].__dict__, "ratio": 1.0})
    result = engine.blender.prefill(rag_prompt, opts, len(rag_prompt), "pr-1")
    ids = torch.tensor(rag_prompt.ids)
    want = engine.model.forward(ids, engine.model.new_cache(len(ids)))
    assert result.ratio_used == 1.0
    assert (result.logits - want).abs().max().item() < 2e-3


@pytest.mark.parametrize("name", sorted(REFINED))
def test_each_refinement_changes_the_recomputed_rows(
    engine: TorchEngine, rag_prompt: Prompt, name: str
) -> None:
    warm(engine, rag_prompt, "pr-r")
    base = engine.blender.prefill(rag_prompt, BASE, len(rag_prompt), "pr-r")
    refined = engine.blender.prefill(rag_prompt, REFINED[name], len(rag_prompt), "pr-r")
    assert base.rows is not None and refined.rows is not None
    assert abs(refined.ratio_used - base.ratio_used) < 0.02  # the same budget...
    assert set(refined.rows.tolist()) != set(base.rows.tolist())  # ...spent on other rows


def test_compute_share_counts_the_probe_and_the_full_layers(engine: TorchEngine, rag_prompt: Prompt) -> None:
    warm(engine, rag_prompt, "pr-c")
    layers = len(engine.model.layers)
    one = engine.blender.prefill(rag_prompt, BASE, len(rag_prompt), "pr-c")
    two = engine.blender.prefill(rag_prompt, REFINED["deviation"], len(rag_prompt), "pr-c")
    n = len(rag_prompt)
    rows_share = (n - one.cached_tokens + one.recomputed_tokens) / n
    assert one.probe_rows > 0 and one.full_layers == 1
    assert one.compute_share(layers) > rows_share + one.probe_rows / n - 1e-9
    # one more layer on every row costs about 1/layers of the unselected rows
    assert two.compute_share(layers) - one.compute_share(layers) == pytest.approx(
        (1 - rows_share) / layers, abs=0.02
    )


def test_craft_factor_follows_the_stored_statistic() -> None:
    k = torch.zeros(1, 1, 3, 4)
    chunk = ChunkKV(k, k, 0, {"token_inter": [1.0, 2.0, 3.0]})
    factor = craft_factor([chunk], 1.0)
    assert factor is not None and factor[0] < factor[1] < factor[2]
    assert craft_factor([chunk], 0.0) is None
    assert craft_factor([ChunkKV(k, k, 0, {})], 1.0) is None  # no statistic: no weighting


def test_deviation_factor_ranks_the_rows_that_changed() -> None:
    old = torch.zeros(1, 2, 4, 8)
    new = old.clone()
    new[:, :, 2] = 1.0
    factor = deviation_factor(new, new, old, old, 1.0)
    assert int(factor.argmax()) == 2


def test_deviation_weight_needs_two_full_layers() -> None:
    with pytest.raises(ValueError, match="full_layers"):
        BlendOptions(mode="probe", deviation_weight=1.0, full_layers=1)
    with pytest.raises(ValueError):
        BlendOptions(mode="probe", craft_weight=-1.0)


def _naive_scores(
    engine: TorchEngine,
    ids: torch.Tensor,
    kv: KVCache,
    rows: torch.Tensor,
    score_rows: int,
    cands: torch.Tensor,
) -> torch.Tensor:
    """The probe's scores written the plain way: every query head against its repeated K/V head."""
    import math

    from engine.rope import apply_rope

    model = engine.model
    cfg = model.cfg
    n = ids.shape[0]
    group = cfg.num_heads // cfg.num_kv_heads
    cos, sin = model.rope.lookup(rows)
    visible = torch.arange(n)[None, :] <= rows[:, None]
    total = torch.zeros(len(cands))
    h = model.embed[ids[rows]]
    for i, layer in enumerate(model.layers):
        q, k, v = layer.project_qkv(h)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kv.k[i][:, :, rows] = k
        kv.v[i][:, :, rows] = v
        keys, values = kv.view(i, n)
        kg = keys.repeat_interleave(group, dim=1).float()
        vg = values.repeat_interleave(group, dim=1).float()
        probs = ((q.float() @ kg.transpose(-1, -2)) / math.sqrt(cfg.head_dim)).masked_fill(
            ~visible, -math.inf
        )
        probs = probs.softmax(-1)
        h = layer.finish(h, (probs @ vg).to(h.dtype))
        s = (probs[0, :, -score_rows:][:, :, cands].sum(1) * vg[0][:, cands].norm(dim=-1)).sum(0)
        total += s / s.sum()
    return total


def test_probe_scores_match_the_plain_per_head_formula(engine: TorchEngine, rag_prompt: Prompt) -> None:
    from engine.blend.probe import probe_scores

    ids = torch.tensor(rag_prompt.ids)
    n = len(ids)
    kv = engine.model.new_cache(n)
    engine.model.forward(ids, kv)
    rows = torch.arange(n - 12, n)
    cands = torch.arange(5, n - 12)
    got = probe_scores(engine.model, ids, kv, rows, 8, cands)
    want = _naive_scores(engine, ids, kv, rows, 8, cands)
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-5)
    assert int(got.argmax()) == int(want.argmax())
