"""Moving cached keys to new positions and writing cached rows into a sequence's KV cache."""

from __future__ import annotations

import torch

from engine.kv_cache import KVCache
from engine.rope import RotaryTable


def shift_rotation(table: RotaryTable, delta: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin rows [head_dim] rotating post-RoPE keys by `delta` positions (negative moves back).

    RoPE rotations compose, so a key rotated for position p becomes the key for p + delta after one
    more rotation by delta: no need to keep keys before RoPE.
    """
    cos, sin = table.lookup(torch.tensor([abs(delta)]))
    sign = -1.0 if delta < 0 else 1.0
    return cos[0].to(dtype), (sin[0] * sign).to(dtype)


def rotate_keys(k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate keys [..., head_dim] by one angle set (half-split pairing)."""
    half = k.shape[-1] // 2
    rotated = torch.cat([-k[..., half:], k[..., :half]], dim=-1)
    return k * cos + rotated * sin


def place_entry(
    kv: KVCache, table: RotaryTable, k: torch.Tensor, v: torch.Tensor, cached_start: int, new_start: int
) -> None:
    """Write a chunk's cached K/V ([layers, kv_heads, T, dim], post-RoPE at `cached_start`) into `kv`
    at rows [new_start, new_start + T), rotating keys when the chunk moved."""
    t = k.shape[2]
    dtype = kv.k[0].dtype
    k = k.to(dtype)
    if new_start != cached_start:
        cos, sin = shift_rotation(table, new_start - cached_start, dtype)
        k = rotate_keys(k, cos, sin)
    for layer in range(len(kv.k)):
        kv.k[layer][0, :, new_start : new_start + t] = k[layer]
        kv.v[layer][0, :, new_start : new_start + t] = v[layer].to(dtype)


def extract_rows(kv: KVCache, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K/V rows [start, end) of every layer as [layers, kv_heads, T, dim] copies (post-RoPE keys)."""
    k = torch.stack([kv.k[layer][0, :, start:end] for layer in range(len(kv.k))]).clone()
    v = torch.stack([kv.v[layer][0, :, start:end] for layer in range(len(kv.v))]).clone()
    return k, v
