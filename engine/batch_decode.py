"""One decode step for every sequence of a batch in a single forward pass."""

from __future__ import annotations

import torch

from engine.batch_kv import BatchKV
from engine.layers import attention
from engine.model import LlamaModel
from engine.rope import apply_rope


@torch.inference_mode()
def decode_step(model: LlamaModel, cache: BatchKV, tokens: list[int]) -> torch.Tensor:
    """Feed `tokens[i]` to the sequence in slot i, for all n slots at once; return logits [n, vocab].

    Row i sits at position `cache.lengths[i]`: its K/V are written there and it attends to its own
    rows [0, length] only, through a key-padding mask over the batch's leading block. Every matmul
    runs once for the whole batch (the weights are read once per step, not once per sequence), and no
    Python loop runs over sequences or tokens here, only over layers.
    """
    n = cache.size
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} tokens for a batch of {n} sequences")
    positions = torch.tensor(cache.lengths)
    longest = max(cache.lengths) + 1
    if longest > cache.capacity:
        raise ValueError(f"KV batch overflow: position {longest - 1} >= capacity {cache.capacity}")
    slots = torch.arange(n)
    # [n, 1, 1, longest]: row i may attend to keys 0..positions[i]; broadcast over heads and the query.
    mask = (torch.arange(longest)[None, :] <= positions[:, None])[:, None, None, :]
    cos, sin = model.rope.lookup(positions)
    h = model.embed[torch.tensor(tokens)]
    for i, layer in enumerate(model.layers):
        # The layer sees the batch as n tokens of one sequence ([1, heads, n, dim]); RoPE takes each
        # row's own position; attention then needs the batch on the leading axis ([n, heads, 1, dim]).
        q, k, v = layer.project_qkv(h)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        cache.k[i][slots, :, positions] = k[0].transpose(0, 1)
        cache.v[i][slots, :, positions] = v[0].transpose(0, 1)
        keys, values = cache.k[i][:n, :, :longest], cache.v[i][:n, :, :longest]
        o = attention(q.permute(2, 1, 0, 3), keys, values, mask=mask)
        h = layer.finish(h, o.permute(2, 1, 0, 3))
    cache.lengths = [length + 1 for length in cache.lengths]
    return model.logits(h)
