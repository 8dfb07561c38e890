"""Rotary position embeddings with the rope settings of Llama-family configs."""

from __future__ import annotations

import math

import torch

from engine.config import ModelConfig


def inverse_frequencies(cfg: ModelConfig) -> tuple[torch.Tensor, float]:
    """Per-pair inverse frequencies and the attention scaling factor for `cfg`'s rope type."""
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    scaling = cfg.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq.float(), 1.0
    if kind == "linear":
        return (inv_freq / float(scaling["factor"])).float(), 1.0
    if kind == "llama3":
        factor = float(scaling["factor"])
        low = float(scaling.get("low_freq_factor", 1.0))
        high = float(scaling.get("high_freq_factor", 4.0))
        old_len = float(scaling.get("original_max_position_embeddings", 8192))
        wavelen = 2 * math.pi / inv_freq
        smooth = (old_len / wavelen - low) / (high - low)
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        mid = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        is_mid = (wavelen <= old_len / low) & (wavelen >= old_len / high)
        return torch.where(is_mid, mid, scaled).float(), 1.0
    raise ValueError(f"rope type {kind!r} is not supported")


class RotaryTable:
    """Precomputed cos/sin rows for every position up to `max_positions`."""

    def __init__(
        self, cfg: ModelConfig, max_positions: int, dtype: torch.dtype, device: torch.device | None = None
    ) -> None:
        inv_freq, attn_scale = inverse_frequencies(cfg)
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        emb = torch.cat([angles, angles], dim=-1)
        # computed on the CPU in float32 whatever the device, so every device rotates alike
        self.cos = (emb.cos() * attn_scale).to(dtype).to(device)
        self.sin = (emb.sin() * attn_scale).to(dtype).to(device)
        self.max_positions = max_positions
        self.device = self.cos.device

    def lookup(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin rows, shape [T, head_dim], for integer `positions` of shape [T] (any device)."""
        positions = positions.to(self.device)
        return self.cos[positions], self.sin[positions]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` of shape [heads, T, head_dim] (half-split pairing, as Hugging Face checkpoints use)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin
