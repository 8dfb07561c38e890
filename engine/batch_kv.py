"""The K/V of every decoding sequence, one slot each, in one tensor per layer."""

from __future__ import annotations

import torch

from engine.config import ModelConfig
from engine.kv_cache import KVCache

ROW_BLOCK = 256  # capacity grows and shrinks in whole blocks, so joins rarely reallocate


def _round_up(n: int, block: int) -> int:
    return max(block, -(-n // block) * block)


class BatchKV:
    """`k[layer]` and `v[layer]` are [slots, kv_heads, capacity, head_dim]; slot i holds `lengths[i]` rows.

    Why one tensor with per-row lengths rather than per-sequence caches gathered into a padded batch:
    a gather copies every sequence's whole K/V at every step and layer, which on a CPU costs more than
    the attention itself; here a decode step reads the leading block [:n, :, :longest] in place and
    masks each row's padding.

    Occupied slots are always 0..n-1: a leaving sequence's slot is refilled by the last one (one copy
    of its rows), so that leading block has no holes. Capacity covers the largest `limit` (prompt plus
    max_tokens) among the sequences held, grows on join and shrinks when the longest leave; an empty
    batch holds no memory at all.
    """

    def __init__(
        self, cfg: ModelConfig, dtype: torch.dtype, max_slots: int, device: torch.device | None = None
    ) -> None:
        self.device = device
        self.cfg = cfg
        self.dtype = dtype
        self.max_slots = max_slots
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.lengths: list[int] = []
        self.limits: list[int] = []

    @property
    def size(self) -> int:
        return len(self.lengths)

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2] if self.k else 0

    @property
    def slots(self) -> int:
        return self.k[0].shape[0] if self.k else 0

    def rows_in_use(self) -> int:
        return sum(self.lengths)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def add(self, kv: KVCache, length: int, limit: int) -> int:
        """Copy rows [0, length) of a prefilled `kv` into a new slot that may grow to `limit` rows."""
        if self.size >= self.max_slots:
            raise ValueError(f"batch is full: {self.max_slots} sequences")
        slot = self.size
        self._resize(slot + 1, max([limit, *self.limits]))
        for layer in range(self.cfg.num_layers):
            self.k[layer][slot, :, :length] = kv.k[layer][0, :, :length]
            self.v[layer][slot, :, :length] = kv.v[layer][0, :, :length]
        self.lengths.append(length)
        self.limits.append(limit)
        return slot

    def remove(self, slot: int) -> int | None:
        """Free `slot`; return the former slot of the sequence moved into it (None when none moved)."""
        last = self.size - 1
        moved: int | None = None
        if slot != last:
            n = self.lengths[last]
            for layer in range(self.cfg.num_layers):
                self.k[layer][slot, :, :n] = self.k[layer][last, :, :n]
                self.v[layer][slot, :, :n] = self.v[layer][last, :, :n]
            self.lengths[slot], self.limits[slot] = n, self.limits[last]
            moved = last
        self.lengths.pop()
        self.limits.pop()
        if not self.lengths:
            self.k, self.v = [], []
        elif 2 * _round_up(max(self.limits), ROW_BLOCK) <= self.capacity:
            self._resize(self.size, max(self.limits), shrink=True)
        return moved

    def _resize(self, slots: int, rows: int, shrink: bool = False) -> None:
        """Make room for `slots` sequences of up to `rows` rows (slots double, rows round to blocks)."""
        new_slots = self.slots if self.slots >= slots else min(self.max_slots, max(slots, 2 * self.slots))
        new_rows = _round_up(rows, ROW_BLOCK) if shrink or rows > self.capacity else self.capacity
        if new_slots == self.slots and new_rows == self.capacity:
            return
        shape = (new_slots, self.cfg.num_kv_heads, new_rows, self.cfg.head_dim)
        n, longest = self.size, max(self.lengths, default=0)
        new_k, new_v = [], []
        for layer in range(self.cfg.num_layers):
            # zeros, not empty: masked padding still enters the score matmul, and NaN garbage would
            # survive the mask (NaN + -inf is NaN)
            k = torch.zeros(shape, dtype=self.dtype, device=self.device)
            v = torch.zeros(shape, dtype=self.dtype, device=self.device)
            if n:
                k[:n, :, :longest] = self.k[layer][:n, :, :longest]
                v[:n, :, :longest] = self.v[layer][:n, :, :longest]
            new_k.append(k)
            new_v.append(v)
        self.k, self.v = new_k, new_v
