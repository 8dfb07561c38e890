"""Moving cached keys to new positions and writing cached rows into a sequence's KV cache.

On a GPU, cached chunks arrive from the store as host tensors. `place_entries` copies them in layer
by layer on a stream of its own, from pinned (page-locked) staging copies with non-blocking copies,
and records one event per layer in the KV cache: the prefill that follows waits for layer i's event
only when it reaches layer i (KVCache.wait_layer), so while the first layers compute, later layers
are still crossing the bus, and pinning layer i + 1 on the host overlaps the copy of layer i.
"""

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


Placement = tuple[torch.Tensor, torch.Tensor, int, int]  # cached k, v, cached start, new start


def place_entries(kv: KVCache, table: RotaryTable, placements: list[Placement]) -> None:
    """`place_entry` for every (k, v, cached_start, new_start); on a GPU, as the module says."""
    if kv.device.type != "cuda":
        for k, v, cached_start, new_start in placements:
            place_entry(kv, table, k, v, cached_start, new_start)
        return
    if not placements:
        return
    compute = torch.cuda.current_stream(kv.device)
    stream = _copy_stream(kv.device)
    stream.wait_stream(compute)  # the cache's memory may still be in use by earlier kernels
    dtype = kv.k[0].dtype
    events: list[torch.cuda.Event] = []
    with torch.cuda.stream(stream):  # everything below is queued on the copy stream, and lives there
        rotations = {
            new - old: shift_rotation(table, new - old, dtype) for _, _, old, new in placements if new != old
        }
        for layer in range(len(kv.k)):
            for k, v, cached_start, new_start in placements:
                t = k.shape[2]
                k_dev = _upload(k[layer], kv.device).to(dtype)
                v_dev = _upload(v[layer], kv.device).to(dtype)
                if new_start != cached_start:
                    cos, sin = rotations[new_start - cached_start]
                    k_dev = rotate_keys(k_dev, cos, sin)
                kv.k[layer][0, :, new_start : new_start + t] = k_dev
                kv.v[layer][0, :, new_start : new_start + t] = v_dev
            event = torch.cuda.Event()
            event.record(stream)
            events.append(event)
    kv.mark_uploads(events)


_streams: dict[torch.device, torch.cuda.Stream] = {}


def _copy_stream(device: torch.device) -> torch.cuda.Stream:
    if device not in _streams:
        _streams[device] = torch.cuda.Stream(device)
    return _streams[device]


def _upload(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`rows` on `device`: as is when already there, else through a pinned host copy, non-blocking
    (the host allocator keeps the pinned block until the copy has run)."""
    if rows.device == device:
        return rows
    host = rows if rows.is_pinned() else rows.contiguous().pin_memory()
    return host.to(device, non_blocking=True)


def extract_rows(kv: KVCache, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K/V rows [start, end) of every layer as [layers, kv_heads, T, dim] copies (post-RoPE keys)."""
    k = torch.stack([kv.k[layer][0, :, start:end] for layer in range(len(kv.k))]).clone()
    v = torch.stack([kv.v[layer][0, :, start:end] for layer in range(len(kv.v))]).clone()
    return k, v
