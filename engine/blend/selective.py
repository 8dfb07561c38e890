"""A prefill that recomputes only some rows of a prompt whose other rows come from chunk caches."""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.kv_cache import KVCache
from engine.layers import attention
from engine.model import LlamaModel
from engine.rope import apply_rope

# (layer, fresh q, fresh k, fresh v, cached k, cached v) -> sorted row indices to keep recomputing
Selector = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def causal_mask_for_rows(rows: torch.Tensor, n: int) -> torch.Tensor:
    """Exact causal mask: query row i (at position rows[i]) sees keys at positions <= rows[i] only."""
    return torch.arange(n)[None, :] <= rows[:, None]


@torch.inference_mode()
def selective_prefill(
    model: LlamaModel,
    ids: torch.Tensor,
    kv: KVCache,
    rows: torch.Tensor | None,
    *,
    full_layers: int = 0,
    selector: Selector | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefill `ids` [N] into `kv`, whose rows not recomputed already hold cached (placed) K/V.

    Layers below `full_layers` run on every row. At layer `full_layers - 1` (the check layer),
    `selector` picks the rows that continue; from then on only those rows are computed and their fresh
    K/V overwrite the cached ones. With `full_layers == 0`, `rows` are the recomputed rows from the
    start. Rows must include every position with no cached K/V and the last position.
    Returns (last-position logits, recomputed rows).
    """
    n = ids.shape[0]
    positions = torch.arange(n)
    cos_all, sin_all = model.rope.lookup(positions)
    if full_layers == 0:
        if rows is None:
            raise ValueError("rows are required when no layer runs on all tokens")
        active: torch.Tensor | None = rows
        h = model.embed[ids[rows]]
    else:
        active = None
        h = model.embed[ids]
    mask = None if active is None else causal_mask_for_rows(active, n)
    for i, layer in enumerate(model.layers):
        q, k, v = layer.project_qkv(h)
        if active is None:
            q, k = apply_rope(q, cos_all, sin_all), apply_rope(k, cos_all, sin_all)
            if i == full_layers - 1 and selector is not None:
                active = selector(i, q, k, v, kv.k[i][:, :, :n], kv.v[i][:, :, :n])
                mask = causal_mask_for_rows(active, n)
                kv.write(i, 0, k, v)
                o = attention(q[:, :, active], k, v, mask=mask)
                h = layer.finish(h[active], o)
                continue
            kv.write(i, 0, k, v)
            h = layer.finish(h, attention(q, k, v, causal=n > 1))
            if i == full_layers - 1:
                active = positions
                mask = causal_mask_for_rows(active, n)
            continue
        cos, sin = cos_all[active], sin_all[active]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kv.k[i][:, :, active] = k
        kv.v[i][:, :, active] = v
        keys, values = kv.view(i, n)
        h = layer.finish(h, attention(q, keys, values, mask=mask))
    kv.length = n
    assert active is not None and int(active[-1]) == n - 1, "the last position must be recomputed"
    return model.logits(h[-1:])[0], active
