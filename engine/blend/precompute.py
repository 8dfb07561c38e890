"""Computing a chunk's KV cache after a given context, with Cache-Craft's attention statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.kv_cache import KVCache
from engine.model import LlamaModel
from engine.rope import apply_rope


@dataclass(frozen=True)
class ChunkKV:
    """K (post-RoPE, for positions start..start+T-1) and V of a chunk, [layers, kv_heads, T, dim]."""

    k: torch.Tensor
    v: torch.Tensor
    start: int
    craft: dict[str, float | list[float]]


def craft_statistics(inter: torch.Tensor, context_len: int) -> dict[str, float | list[float]]:
    """Cache-Craft's context impact from per-layer, per-token attention mass on the context.

    `inter` is [layers, T]: for each chunk token, the head-averaged attention it pays to the context
    (excluding position 0, the attention sink every token leans on whatever the context). Intra
    attention is the rest of the mass. a = inter / (|C| |P|), b = intra / |C|^2 (length-normalised),
    averaged over layers; CCI = sigmoid(a / b). `token_inter` ranks tokens for recompute.
    """
    return craft_from_token_inter([round(x, 6) for x in inter.mean(0).tolist()], context_len)


def craft_from_token_inter(token_inter: list[float], context_len: int) -> dict[str, float | list[float]]:
    """The same statistics from `token_inter` alone (each token's inter mass, averaged over layers):
    a and b are sums over tokens of layer means, so a chunk computed in slices gets them from its
    slices' `token_inter` put end to end."""
    ctx = max(context_len - 1, 1)
    chunk_len = max(len(token_inter), 1)
    inter = sum(token_inter)
    a = inter / (chunk_len * ctx)
    b = (chunk_len - inter) / (chunk_len * chunk_len)
    cci = 1.0 / (1.0 + math.exp(-a / max(b, 1e-12)))
    return {"cci": cci, "a": a, "b": b, "token_inter": list(token_inter)}


@torch.inference_mode()
def precompute_chunk(
    model: LlamaModel, context: ChunkKV | None, chunk_ids: torch.Tensor, stats_len: int | None = None
) -> ChunkKV:
    """K/V of `chunk_ids` computed after `context` (its cached K/V, placed at its own positions).

    The statistics count attention to the first `stats_len` context positions as attention to the
    context (default: all of it); a slice of a chunk, computed after the prefix and the slices before
    it, passes the prefix's length.
    Attention is computed explicitly (not through SDPA) because its probabilities give the statistics.
    """
    cfg = model.cfg
    p = 0 if context is None else context.k.shape[2]
    stats = p if stats_len is None else min(stats_len, p)
    t = chunk_ids.shape[0]
    device = model.device
    kv = KVCache(cfg, p + t, model.dtype, device)
    if context is not None:
        for n in range(cfg.num_layers):
            kv.k[n][0, :, :p] = context.k[n].to(device).to(model.dtype)
            kv.v[n][0, :, :p] = context.v[n].to(device).to(model.dtype)
    cos, sin = model.rope.lookup(torch.arange(p, p + t))
    mask = (torch.arange(p + t)[None, :] <= torch.arange(p, p + t)[:, None]).to(device)
    group = cfg.num_heads // cfg.num_kv_heads
    scale = 1.0 / math.sqrt(cfg.head_dim)
    inter = torch.zeros(cfg.num_layers, t, device=device)
    h = model.embed[chunk_ids.to(device)]
    for i, layer in enumerate(model.layers):
        q, k, v = layer.project_qkv(h)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kv.write(i, p, k, v)
        keys, values = kv.view(i, p + t)
        keys, values = keys.repeat_interleave(group, dim=1), values.repeat_interleave(group, dim=1)
        scores = (q.float() @ keys.float().transpose(-1, -2)) * scale
        probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        if stats > 1:
            inter[i] = probs[0, :, :, 1:stats].sum(-1).mean(0)
        h = layer.finish(h, (probs @ values.float()).to(model.dtype))
    k_rows = torch.stack([kv.k[i][0, :, p:] for i in range(cfg.num_layers)]).clone()
    v_rows = torch.stack([kv.v[i][0, :, p:] for i in range(cfg.num_layers)]).clone()
    return ChunkKV(k_rows, v_rows, p, craft_statistics(inter.cpu(), stats))
