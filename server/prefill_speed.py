"""The engine's measured prefill speed, for selection budgets in estimated milliseconds.

Measured once per engine, on the first request that asks for a budget in ms (a few short
prefills of 256 and 1024 tokens, a few seconds on a small CPU), then reused.
"""

from __future__ import annotations

import threading
import weakref

from engine.torch_engine import TorchEngine
from retrieval.selection.speed import PrefillSpeed, measure_prefill_speed

_speeds: weakref.WeakKeyDictionary[TorchEngine, PrefillSpeed] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def prefill_speed(engine: TorchEngine) -> PrefillSpeed:
    """The prefill time model of `engine`'s model: tokens per second and attention per pair."""
    with _lock:
        if engine not in _speeds:
            _speeds[engine] = measure_prefill_speed(engine.model)
        return _speeds[engine]
