"""Handle through which the engine uses layer l of a request's chunks while later layers
are still arriving.

The store fills it from a background thread: memory and disk hits are complete at once;
entries split into parts in Redis are streamed in layer order and each layer is verified
(CRC) before it is released. ``layer(l)`` blocks until layer l of every requested entry
is verified or the entry is known to be a miss.

A failure after an entry's first layers were handed out (a later part missing or
corrupt, Redis dying mid-transfer) cannot become a quiet miss any more: ``layer()`` then
raises ``FetchFailed`` and the caller restarts with ``entries()``, in which such entries
are None. A failure before anything was handed out is an ordinary miss.
"""

from __future__ import annotations

import threading

import torch

from cache.entry import ChunkEntry

KV = tuple[torch.Tensor, torch.Tensor]
ALL_LAYERS = 1 << 30

_PENDING, _MISS, _HIT = 0, 1, 2


class FetchFailed(Exception):
    """Entries whose earlier layers were already used turned out unusable."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(f"{len(keys)} chunk entries failed mid-transfer")
        self.keys = keys


class LayeredFetch:
    """Per-layer access to the result of ``TieredStore.get_many_layered``. Thread-safe."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self._cond = threading.Condition()
        self._state = [_PENDING] * len(keys)
        self._entries: list[ChunkEntry | None] = [None] * len(keys)
        self._ready = [0] * len(keys)
        self._failed: list[str] = []
        self._handed_out = False
        self._done = False

    # -- producer side (the store) --------------------------------------------------------
    def set_entry(self, i: int, entry: ChunkEntry, ready_layers: int = ALL_LAYERS) -> None:
        """Key ``i`` is a hit; its first ``ready_layers`` layers may be read now."""
        with self._cond:
            self._state[i], self._entries[i], self._ready[i] = _HIT, entry, ready_layers
            self._cond.notify_all()

    def advance(self, i: int, ready_layers: int) -> None:
        """Layers ``< ready_layers`` of key ``i`` are verified."""
        with self._cond:
            self._ready[i] = max(self._ready[i], ready_layers)
            self._cond.notify_all()

    def miss(self, i: int) -> None:
        """Key ``i`` is not available (or no longer: see the module docstring)."""
        with self._cond:
            if self._state[i] == _HIT and self._ready[i] > 0 and self._handed_out:
                self._failed.append(self.keys[i])
            self._state[i], self._entries[i], self._ready[i] = _MISS, None, 0
            self._cond.notify_all()

    def finish(self) -> None:
        """Every key is resolved; keys still pending become misses."""
        with self._cond:
            for i, state in enumerate(self._state):
                if state == _PENDING:
                    self._state[i] = _MISS
            self._done = True
            self._cond.notify_all()

    # -- consumer side (the engine) -------------------------------------------------------
    def done(self) -> bool:
        """Whether every entry has arrived (or the fetch ended)."""
        with self._cond:
            return self._done

    def entries(self, timeout: float | None = None) -> list[ChunkEntry | None]:
        """All entries, one per key (None = miss), once the fetch is over."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._done, timeout):
                raise TimeoutError("chunk fetch still running")
            return list(self._entries)

    def _layer_ready(self, layer: int) -> bool:
        if self._failed:
            return True
        return all(
            s == _MISS or (s == _HIT and r > layer) for s, r in zip(self._state, self._ready, strict=True)
        )

    def layer(self, layer: int, timeout: float | None = None) -> list[KV | None]:
        """``(k[layer], v[layer])`` per key (None = miss) once that layer is verified.

        Raises FetchFailed (see the module docstring) or TimeoutError.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._layer_ready(layer), timeout):
                raise TimeoutError(f"layer {layer} still arriving")
            if self._failed:
                raise FetchFailed(list(self._failed))
            self._handed_out = True
            return [None if e is None else (e.k[layer], e.v[layer]) for e in self._entries]
