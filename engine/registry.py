"""Backends by name, imported lazily so optional dependencies load only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from engine.base import Engine
from engine.config import EngineConfig

_BACKENDS: dict[str, str] = {
    "torch": "engine.torch_engine:TorchEngine",
}


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def create_engine(name: str, cfg: EngineConfig) -> Engine:
    if name not in _BACKENDS:
        raise ValueError(f"unknown engine {name!r}; available: {available_backends()}")
    module_name, class_name = _BACKENDS[name].split(":")
    factory: Callable[[EngineConfig], Engine] = getattr(importlib.import_module(module_name), class_name)
    return factory(cfg)
