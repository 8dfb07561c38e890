"""Moving cached keys to new positions and writing cached rows into a sequence's KV cache.

On a GPU, cached chunks arrive from the store as host tensors. `place_entries` copies them in layer
by layer on a stream of its own, from pinned (page-locked) staging copies with non-blocking copies,
and records one event per layer in the KV cache: the prefill that follows waits for layer i's event
only when it reaches layer i (KVCache.wait_layer), so while the first layers compute, later layers
are still crossing the bus, and pinning layer i + 1 on the host overlaps the copy of layer i.
"""

from __future__ import annotations

from typing import NamedTuple

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


def write_keys(
    dst: torch.Tensor, k: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None
) -> None:
    """`dst` = `k` rotated by (cos, sin), computed in `dst` itself; `sin` None: `k` times `cos` only,
    both None: `k` as it is.

    Half-split pairing: the rotated key is k * cos + (-k2, k1) * sin. Written in place, with no
    temporary the size of the chunk: otherwise placing a prompt's chunks allocates (and first touches)
    several times the prompt's K in fresh memory on every blend. `cos`/`sin` may carry a factor (the
    reuse temperature's 1/T): the rotation is linear.
    """
    dst.copy_(k)
    if cos is not None:
        dst.mul_(cos)
    if sin is None:
        return
    half = k.shape[-1] // 2
    dst[..., :half].addcmul_(k[..., half:], sin[:half], value=-1.0)
    dst[..., half:].addcmul_(k[..., :half], sin[half:])


class Placement(NamedTuple):
    """A cached chunk's K/V ([layers, kv_heads, T, dim], keys post-RoPE at `cached_start`) to write
    at `new_start`, its keys scaled by `key_scale` (the reuse temperature's 1/T; 1 keeps them)."""

    k: torch.Tensor
    v: torch.Tensor
    cached_start: int
    new_start: int
    key_scale: float = 1.0


def _rotation(
    table: RotaryTable, place: Placement, dtype: torch.dtype
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The (cos, sin) that move and scale `place`'s keys; (None, None) when they stay as stored."""
    if place.new_start == place.cached_start:
        if place.key_scale == 1.0:
            return None, None
        return torch.full((place.k.shape[-1],), place.key_scale, dtype=dtype, device=table.device), None
    cos, sin = shift_rotation(table, place.new_start - place.cached_start, dtype)
    if place.key_scale != 1.0:
        cos, sin = cos * place.key_scale, sin * place.key_scale
    return cos, sin


def place_entry(
    kv: KVCache,
    table: RotaryTable,
    k: torch.Tensor,
    v: torch.Tensor,
    cached_start: int,
    new_start: int,
    key_scale: float = 1.0,
) -> None:
    """Write a chunk's cached K/V ([layers, kv_heads, T, dim], post-RoPE at `cached_start`) into `kv`
    at rows [new_start, new_start + T), rotating keys when the chunk moved and scaling them by
    `key_scale`."""
    place_entries(kv, table, [Placement(k, v, cached_start, new_start, key_scale)])


def place_entries(kv: KVCache, table: RotaryTable, placements: list[Placement]) -> None:
    """`place_entry` for every placement; on a GPU, as the module says."""
    if not placements:
        return
    dtype = kv.k[0].dtype
    if kv.device.type != "cuda":
        for place in placements:
            cos, sin = _rotation(table, place, dtype)
            t, at = place.k.shape[2], place.new_start
            for layer in range(len(kv.k)):
                write_keys(kv.k[layer][0, :, at : at + t], place.k[layer], cos, sin)
                kv.v[layer][0, :, at : at + t] = place.v[layer]
        return
    compute = torch.cuda.current_stream(kv.device)
    stream = _copy_stream(kv.device)
    stream.wait_stream(compute)  # the cache's memory may still be in use by earlier kernels
    events: list[torch.cuda.Event] = []
    with torch.cuda.stream(stream):  # everything below is queued on the copy stream, and lives there
        rotations = [_rotation(table, place, dtype) for place in placements]
        for layer in range(len(kv.k)):
            for place, (cos, sin) in zip(placements, rotations, strict=True):
                t, at = place.k.shape[2], place.new_start
                k_dev = _upload(place.k[layer], kv.device)
                v_dev = _upload(place.v[layer], kv.device)
                write_keys(kv.k[layer][0, :, at : at + t], k_dev, cos, sin)
                kv.v[layer][0, :, at : at + t] = v_dev
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
