"""Eviction policies, shared by the memory and disk tiers.

A policy only orders keys; the tier owns the data, holds the lock around every call and
asks ``victim()`` for the next key to drop until its budget is met.
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from collections import OrderedDict

from cache.config import EvictionName


class EvictionPolicy(ABC):
    """Orders the keys of one tier. Not thread-safe: the tier serialises calls."""

    @abstractmethod
    def add(self, key: str, nbytes: int, cost: float) -> None:
        """Record a new (or rewritten) entry of ``nbytes`` whose reuse saves ``cost``."""

    @abstractmethod
    def touch(self, key: str) -> None:
        """Record a hit on ``key``; unknown keys are ignored."""

    @abstractmethod
    def remove(self, key: str) -> None:
        """Forget ``key`` (evicted or deleted); unknown keys are ignored."""

    @abstractmethod
    def victim(self) -> str | None:
        """The key to evict next (still tracked until ``remove``), or None if empty."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of tracked keys."""


class LRUPolicy(EvictionPolicy):
    """Least recently used first."""

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str, nbytes: int, cost: float) -> None:
        self._order[key] = None
        self._order.move_to_end(key)

    def touch(self, key: str) -> None:
        if key in self._order:
            self._order.move_to_end(key)

    def remove(self, key: str) -> None:
        self._order.pop(key, None)

    def victim(self) -> str | None:
        return next(iter(self._order), None)

    def __len__(self) -> int:
        return len(self._order)


class CraftPolicy(EvictionPolicy):
    """Cache-Craft-style value per byte: decayed hit count x recompute cost / bytes.

    Hit counts decay on a logical clock (one tick per add or hit, so replays are
    deterministic) with a half-life of ``turnovers`` x (entries tracked) ticks, or a fixed
    ``half_life`` when given. Tying the half-life to the tier's size keeps the estimate
    about as long-sighted as the tier is large: a fixed, long memory keeps once-popular
    chunks after the workload moved on (LRU then wins), a very short one degenerates to
    LRU. Because every count decays at the same rate, the order of two entries only
    changes when one of them is touched, so a lazy heap keeps ``victim()`` at O(log n);
    the heap is rebuilt when the size-derived half-life drifts by more than 10%. Counts
    of recently evicted keys are remembered (``ghosts``), so a chunk that comes back is
    not treated as new.
    """

    MIN_HALF_LIFE = 16.0

    def __init__(self, turnovers: float = 2.0, half_life: float | None = None, ghosts: int = 8192) -> None:
        if turnovers <= 0 or (half_life is not None and half_life <= 0):
            raise ValueError("turnovers and half_life must be > 0")
        self._turnovers = turnovers
        self._fixed = half_life
        self._tau = half_life or self.MIN_HALF_LIFE
        self._clock = 0
        self._max_ghosts = ghosts
        # key -> (decayed hits at t_last, t_last, log2(cost / nbytes), heap version)
        self._state: dict[str, tuple[float, int, float, int]] = {}
        self._ghosts: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._heap: list[tuple[float, int, str]] = []
        self._version = 0

    @property
    def half_life(self) -> float:
        """The half-life in use, in ticks (adds and hits)."""
        return self._tau

    def _hits_now(self, hits: float, t_last: int) -> float:
        return hits * math.pow(0.5, (self._clock - t_last) / self._tau)

    def _priority(self, hits: float, t_last: int, value: float) -> float:
        return math.log2(hits) + t_last / self._tau + value

    def _push(self, key: str, hits: float, value: float) -> None:
        self._version += 1
        self._state[key] = (hits, self._clock, value, self._version)
        heapq.heappush(self._heap, (self._priority(hits, self._clock, value), self._version, key))
        if len(self._heap) > 2 * len(self._state) + 64:
            self._rebuild()

    def _rebuild(self) -> None:
        self._heap = [(self._priority(h, t, v), ver, k) for k, (h, t, v, ver) in self._state.items()]
        heapq.heapify(self._heap)

    def _retune(self) -> None:
        if self._fixed is not None:
            return
        target = max(self.MIN_HALF_LIFE, self._turnovers * len(self._state))
        if abs(target - self._tau) > 0.1 * self._tau:
            # Carry the counts over to the new time scale, then reorder.
            self._state = {
                k: (self._hits_now(h, t), self._clock, v, ver) for k, (h, t, v, ver) in self._state.items()
            }
            self._tau = target
            self._rebuild()

    def add(self, key: str, nbytes: int, cost: float) -> None:
        self._clock += 1
        value = math.log2(max(cost, 1e-9) / max(nbytes, 1))
        if key in self._state:
            hits, t_last, _, _ = self._state[key]
        elif key in self._ghosts:
            hits, t_last = self._ghosts.pop(key)
        else:
            hits, t_last = 0.0, self._clock
        self._push(key, self._hits_now(hits, t_last) + 1.0, value)
        self._retune()

    def touch(self, key: str) -> None:
        state = self._state.get(key)
        if state is None:
            return
        self._clock += 1
        hits, t_last, value, _ = state
        self._push(key, self._hits_now(hits, t_last) + 1.0, value)

    def remove(self, key: str) -> None:
        state = self._state.pop(key, None)
        if state is None:
            return
        self._ghosts[key] = (state[0], state[1])
        self._ghosts.move_to_end(key)
        while len(self._ghosts) > self._max_ghosts:
            self._ghosts.popitem(last=False)
        self._retune()

    def victim(self) -> str | None:
        while self._heap:
            _, version, key = self._heap[0]
            state = self._state.get(key)
            if state is not None and state[3] == version:
                return key
            heapq.heappop(self._heap)
        return None

    def __len__(self) -> int:
        return len(self._state)


def make_policy(name: EvictionName, craft_turnovers: float = 2.0) -> EvictionPolicy:
    """The policy called ``name`` in ``StoreConfig.eviction``."""
    if name == "lru":
        return LRUPolicy()
    if name == "craft":
        return CraftPolicy(turnovers=craft_turnovers)
    raise ValueError(f"unknown eviction policy {name!r}")
