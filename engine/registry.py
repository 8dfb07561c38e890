"""Backends by name, imported lazily so optional dependencies load only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from cache.store import ChunkStore
from engine.base import Engine
from engine.config import EngineConfig

_BACKENDS: dict[str, str] = {
    "torch": "engine.torch_engine:TorchEngine",
    "vllm": "engine.vllm.backend:VllmEngine",  # needs the `vllm` extra
}


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def create_engine(name: str, cfg: EngineConfig, store: ChunkStore | None = None) -> Engine:
    """Build backend `name`; `store` holds chunk KV caches (an in-process one when None)."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown engine {name!r}; available: {available_backends()}")
    module_name, class_name = _BACKENDS[name].split(":")
    factory: Callable[..., Engine] = getattr(importlib.import_module(module_name), class_name)
    return factory(cfg, store)
