"""One decode step for every sequence of a batch in a single forward pass."""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from engine.batch_kv import BatchKV
from engine.layers import attention, rms_norm
from engine.model import LlamaModel
from engine.rope import apply_rope

_NAMES = ("qkv_weight", "o_weight", "gate_up_weight", "down_weight")
_transposed: weakref.WeakKeyDictionary[LlamaModel, list[dict[str, torch.Tensor]]] = (
    weakref.WeakKeyDictionary()
)


def decode_weights(model: LlamaModel) -> list[dict[str, torch.Tensor]] | None:
    """Per layer (then the LM head, last), float32 weights copied to the [in, out] layout; None for
    other dtypes. Made once per model and shared by every scheduler over it.

    Why: for a float32 batch of 4 to 8 rows, MKL's x @ W.T (F.linear) takes 2 to 3 times as long as
    x @ W_t with W_t contiguous (measured on AVX-512: one layer 1.9 ms vs 0.75 ms at 8 rows, the LM
    head 46 ms vs 25 ms), which ate most of what batching gains. Prefills keep F.linear, faster from
    about 64 rows on; bfloat16 F.linear has no such gap. The copy costs the weights' size again.
    """
    if model.dtype != torch.float32 or model.device.type != "cpu":  # a CPU (MKL) layout trick
        return None
    if model not in _transposed:
        layers = [{n: getattr(layer, n).t().contiguous() for n in _NAMES} for layer in model.layers]
        _transposed[model] = [*layers, {"lm_head": model.lm_head.t().contiguous()}]
    return _transposed[model]


@torch.inference_mode()
def decode_step(model: LlamaModel, cache: BatchKV, tokens: list[int]) -> torch.Tensor:
    """Feed `tokens[i]` to the sequence in slot i, for all n slots at once; return logits [n, vocab].

    Row i sits at position `cache.lengths[i]`: its K/V are written there and it attends to its own
    rows [0, length] only, through a key-padding mask over the batch's leading block. Every matmul
    runs once for the whole batch (the weights are read once per step, not once per sequence), and no
    Python loop runs over sequences or tokens here, only over layers. The layer math is that of
    `DecoderLayer.project_qkv` and `finish`, with the batch on the leading axis.
    """
    n = cache.size
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} tokens for a batch of {n} sequences")
    positions = torch.tensor(cache.lengths)
    longest = max(cache.lengths) + 1
    if longest > cache.capacity:
        raise ValueError(f"KV batch overflow: position {longest - 1} >= capacity {cache.capacity}")
    cfg = model.cfg
    slots = torch.arange(n)
    # [n, 1, 1, longest]: row i may attend to keys 0..positions[i]; broadcast over heads and the query.
    mask = (torch.arange(longest)[None, :] <= positions[:, None])[:, None, None, :].to(model.device)
    slots, positions = slots.to(model.device), positions.to(model.device)
    cos, sin = (t[:, None, None, :] for t in model.rope.lookup(positions))  # [n, 1, 1, dim]
    transposed = decode_weights(model)

    def linear(x: torch.Tensor, layer: int, name: str, weight: torch.Tensor) -> torch.Tensor:
        return x @ transposed[layer][name] if transposed is not None else F.linear(x, weight)

    h = model.embed[torch.tensor(tokens, device=model.device)]
    for i, layer in enumerate(model.layers):
        qkv = linear(rms_norm(h, layer.input_norm, cfg.rms_norm_eps), i, "qkv_weight", layer.qkv_weight)
        if layer.qkv_bias is not None:
            qkv = qkv + layer.qkv_bias
        q, k, v = qkv.split([layer.q_size, layer.kv_size, layer.kv_size], dim=-1)
        q = apply_rope(q.view(n, cfg.num_heads, 1, cfg.head_dim), cos, sin)
        k = apply_rope(k.view(n, cfg.num_kv_heads, 1, cfg.head_dim), cos, sin)
        cache.k[i][slots, :, positions] = k[:, :, 0]
        cache.v[i][slots, :, positions] = v.view(n, cfg.num_kv_heads, cfg.head_dim)
        keys, values = cache.k[i][:n, :, :longest], cache.v[i][:n, :, :longest]
        o = attention(q, keys, values, mask=mask).reshape(n, layer.q_size)
        h = h + linear(o, i, "o_weight", layer.o_weight)
        x = rms_norm(h, layer.post_norm, cfg.rms_norm_eps)
        gate, up = linear(x, i, "gate_up_weight", layer.gate_up_weight).chunk(2, dim=-1)
        h = h + linear(F.silu(gate) * up, i, "down_weight", layer.down_weight)
    cache.lengths = [length + 1 for length in cache.lengths]
    if transposed is None:
        return model.logits(h)
    return (rms_norm(h, model.final_norm, cfg.rms_norm_eps) @ transposed[-1]["lm_head"]).float()
