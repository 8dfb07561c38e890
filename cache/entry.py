"""A chunk's KV cache as the store holds it: per-layer K/V plus metadata.

Tensors are shaped ``[num_layers, num_kv_heads, token_count, head_dim]``. K is stored
before RoPE, so an entry is position-independent and can be rotated to any position at
blend time. Entries are immutable by contract: the store hands the same tensors to every
reader, so a caller that needs to modify K or V must clone them first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}
"""Storage dtypes accepted by the store, by the name used in ``ChunkMeta.dtype``."""


def dtype_name(dtype: torch.dtype) -> str:
    """The ``ChunkMeta.dtype`` name of a torch dtype; ValueError for unsupported ones."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"unsupported KV dtype {dtype}")


@dataclass(frozen=True)
class ChunkMeta:
    """What the engine knows about a cached chunk besides its tensors.

    ``craft`` holds Cache-Craft attention statistics recorded at precompute time; the store
    treats it as opaque JSON. ``extra`` is free-form JSON too; the Cache-Craft eviction
    policy reads ``extra["recompute_cost"]`` (any positive number, e.g. seconds) when present.
    """

    token_count: int
    dtype: str
    model_fingerprint: str
    prefix_id: str
    num_layers: int
    num_kv_heads: int
    head_dim: int
    craft: dict[str, float | list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The shape K and V must have."""
        return (self.num_layers, self.num_kv_heads, self.token_count, self.head_dim)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with every field."""
        return {
            "token_count": self.token_count,
            "dtype": self.dtype,
            "model_fingerprint": self.model_fingerprint,
            "prefix_id": self.prefix_id,
            "num_layers": self.num_layers,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "craft": self.craft,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkMeta:
        """Inverse of ``to_json``; KeyError/TypeError/ValueError on malformed input."""
        return cls(
            token_count=int(data["token_count"]),
            dtype=str(data["dtype"]),
            model_fingerprint=str(data["model_fingerprint"]),
            prefix_id=str(data["prefix_id"]),
            num_layers=int(data["num_layers"]),
            num_kv_heads=int(data["num_kv_heads"]),
            head_dim=int(data["head_dim"]),
            craft=dict(data.get("craft") or {}),
            extra=dict(data.get("extra") or {}),
        )

    def recompute_cost(self) -> float:
        """What reusing this chunk saves, in arbitrary units (default: its token count)."""
        value = self.extra.get("recompute_cost")
        if isinstance(value, int | float) and value > 0:
            return float(value)
        return float(self.token_count)


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk's K/V (before RoPE) and its metadata, stored under ``key``."""

    key: str
    k: torch.Tensor
    v: torch.Tensor
    meta: ChunkMeta

    @property
    def nbytes(self) -> int:
        """Bytes held by K and V together."""
        return int(self.k.nbytes + self.v.nbytes)

    def validate(self) -> None:
        """Raise ValueError unless the tensors agree with the metadata."""
        if self.meta.dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {self.meta.dtype!r}")
        want = DTYPES[self.meta.dtype]
        for name, t in (("k", self.k), ("v", self.v)):
            if tuple(t.shape) != self.meta.shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, meta says {self.meta.shape}")
            if t.dtype != want:
                raise ValueError(f"{name} has dtype {t.dtype}, meta says {self.meta.dtype}")
            if t.device.type != "cpu":
                raise ValueError(f"{name} is on {t.device}; the store holds CPU tensors")
