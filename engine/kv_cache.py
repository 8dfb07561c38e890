"""Explicit per-layer key/value tensors of one sequence."""

from __future__ import annotations

import torch

from engine.config import ModelConfig


class KVCache:
    """Post-RoPE keys and values of one sequence, preallocated to `capacity` tokens.

    `k[layer]` and `v[layer]` have shape [1, num_kv_heads, capacity, head_dim]; rows [0, length) are
    valid. Callers write rows through `write` and read a prefix through `view`.
    """

    def __init__(
        self, cfg: ModelConfig, capacity: int, dtype: torch.dtype, device: torch.device | None = None
    ) -> None:
        shape = (1, cfg.num_kv_heads, capacity, cfg.head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.capacity = capacity
        self.length = 0
        self.device = self.k[0].device if self.k else torch.device("cpu")
        # per layer, the event after which uploaded rows of that layer are on the device (CUDA only)
        self._uploaded: list[torch.cuda.Event] | None = None

    def mark_uploads(self, events: list[torch.cuda.Event]) -> None:
        """Rows of layer i are being copied in on another stream until `events[i]` (placement.py)."""
        self._uploaded = events

    def wait_layer(self, layer: int) -> None:
        """Order the current stream after layer `layer`'s uploads; a no-op on the CPU or with none."""
        if self._uploaded is not None:
            torch.cuda.current_stream(self.device).wait_event(self._uploaded[layer])

    def wait_all(self) -> None:
        if self._uploaded is not None:
            for layer in range(len(self._uploaded)):
                self.wait_layer(layer)
            self._uploaded = None

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store rows for positions [start, start + T) of `layer`; k and v are [1, kv_heads, T, dim]."""
        end = start + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache overflow: {end} rows > capacity {self.capacity}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v

    def view(self, layer: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)
