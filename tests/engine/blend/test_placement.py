"""Placing cached chunks: keys rotated (and scaled) in the cache itself, as the formula says."""

from __future__ import annotations

import pytest
import torch

from engine.blend.placement import Placement, place_entries, place_entry, shift_rotation
from engine.config import ModelConfig
from engine.kv_cache import KVCache
from engine.rope import RotaryTable


def small_config() -> ModelConfig:
    return ModelConfig.from_dict(
        {
            "model_type": "llama",
            "vocab_size": 32,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        }
    )


def expected(k: torch.Tensor, table: RotaryTable, delta: int, scale: float) -> torch.Tensor:
    """The rotation written out: k * cos + (-k2, k1) * sin, then the scale."""
    if delta == 0:
        return k * scale
    cos, sin = shift_rotation(table, delta, torch.float32)
    half = k.shape[-1] // 2
    rotated = torch.cat([-k[..., half:], k[..., :half]], dim=-1)
    return (k * cos + rotated * sin) * scale


@pytest.mark.parametrize("delta, scale", [(17, 1.0), (17, 1 / 1.1), (-5, 1.0), (0, 1 / 1.1), (0, 1.0)])
def test_placed_keys_follow_the_rotation_formula(delta: int, scale: float) -> None:
    cfg = small_config()
    table = RotaryTable(cfg, 256, torch.float32)
    torch.manual_seed(0)
    k = torch.randn(cfg.num_layers, cfg.num_kv_heads, 12, cfg.head_dim)
    v = torch.randn_like(k)
    stored = k.clone()
    kv = KVCache(cfg, 64, torch.float32)
    cached_start = 20
    place_entry(kv, table, k, v, cached_start, cached_start + delta, key_scale=scale)
    at = cached_start + delta
    want = expected(k, table, delta, scale)
    for layer in range(cfg.num_layers):
        assert torch.allclose(kv.k[layer][0, :, at : at + 12], want[layer], atol=1e-6)
        assert torch.equal(kv.v[layer][0, :, at : at + 12], v[layer])
    assert torch.equal(k, stored)  # the stored chunk itself is left as it was


def test_several_chunks_and_a_lower_precision_cache() -> None:
    cfg = small_config()
    table = RotaryTable(cfg, 256, torch.bfloat16)
    torch.manual_seed(1)
    chunks = [torch.randn(cfg.num_layers, cfg.num_kv_heads, t, cfg.head_dim) for t in (5, 9)]
    original = [c.clone() for c in chunks]
    kv = KVCache(cfg, 64, torch.bfloat16)
    place_entries(
        kv,
        table,
        [Placement(chunks[0], chunks[0], 3, 3), Placement(chunks[1], chunks[1], 8, 30, 0.5)],
    )
    ref_table = RotaryTable(cfg, 256, torch.float32)
    assert torch.allclose(kv.k[1][0, :, 3:8].float(), chunks[0][1], atol=1e-2, rtol=1e-2)
    want = expected(chunks[1], ref_table, 22, 0.5)
    assert torch.allclose(kv.k[2][0, :, 30:39].float(), want[2], atol=2e-2, rtol=2e-2)
    assert all(torch.equal(c, o) for c, o in zip(chunks, original, strict=True))
