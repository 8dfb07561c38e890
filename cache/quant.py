"""Optional 8-bit storage of K/V: symmetric int8 with one absmax scale per token per head."""

from __future__ import annotations

import torch

QUANT_SCHEME = "int8-absmax-token-head"


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise ``[..., head_dim]`` to int8 values and float32 scales of shape ``[...]``."""
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127.0
    q = torch.round(xf / scale).clamp_(-127, 127).to(torch.int8)
    return q, scale.squeeze(-1)


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of ``quantize_int8``, returning a tensor of ``dtype``."""
    return (q.float() * scale.unsqueeze(-1)).to(dtype)


def relative_error(original: torch.Tensor, restored: torch.Tensor) -> float:
    """``||restored - original|| / ||original||`` (Frobenius), computed in float32."""
    a = original.float()
    denom = float(a.norm())
    return float((restored.float() - a).norm()) / denom if denom else 0.0
