"""Blended K/V kept in vLLM's worker process, between the blend (engine/vllm/worker_ext.py) and the
connector's load into the paged cache (engine/vllm/connector.py), so they never pass through a file.

Both run in the worker process, so a module-level table is what they share. An entry is named by the
path its handoff spec carries (a file that is never written), so the scheduler side and the request
parameters are the same as for a file handoff. The serving process removes the entry when its request
ends (`ragblend_discard`), whatever happened to it.
"""

from __future__ import annotations

import threading

import torch

from engine.kv_cache import KVCache

_held: dict[str, KVCache] = {}
_lock = threading.Lock()


def hold(name: str, kv: KVCache) -> None:
    with _lock:
        _held[name] = kv


def rows(name: str, layer: int, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """K and V of positions [start, end) of `layer`, each [tokens, kv_heads, head_dim] (views), or None
    when nothing is held under `name`."""
    with _lock:
        kv = _held.get(name)
    if kv is None:
        return None
    return kv.k[layer][0, :, start:end].transpose(0, 1), kv.v[layer][0, :, start:end].transpose(0, 1)


def is_held(name: str) -> bool:
    with _lock:
        return name in _held


def release(name: str) -> None:
    with _lock:
        _held.pop(name, None)


def count() -> int:
    with _lock:
        return len(_held)
