"""The engine's measured prefill speed, for selection budgets in estimated milliseconds.

Measured once per engine, on the first request that asks for a budget in ms (a few short
prefills, about a second on a small CPU), then reused.
"""

from __future__ import annotations

import threading
import weakref

from engine.torch_engine import TorchEngine
from retrieval.selection.speed import measure_prefill_tokens_per_s

_speeds: weakref.WeakKeyDictionary[TorchEngine, float] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def prefill_speed(engine: TorchEngine) -> float:
    """Prefill tokens per second of `engine`'s model."""
    with _lock:
        if engine not in _speeds:
            _speeds[engine] = measure_prefill_tokens_per_s(engine.model)
        return _speeds[engine]
