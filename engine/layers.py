"""One decoder layer of a Llama-family model, split into the steps blending needs to run separately."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.config import ModelConfig


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm computed in float32 and cast back, in the same order as the reference implementation."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


class DecoderLayer:
    """Weights of one layer with fused projections: q/k/v in one matmul and gate/up in another."""

    def __init__(self, cfg: ModelConfig, tensors: dict[str, torch.Tensor]) -> None:
        self.cfg = cfg
        self.input_norm = tensors["input_layernorm.weight"]
        self.post_norm = tensors["post_attention_layernorm.weight"]
        self.qkv_weight = torch.cat(
            [tensors[f"self_attn.{n}_proj.weight"] for n in ("q", "k", "v")], dim=0
        ).contiguous()
        self.qkv_bias: torch.Tensor | None = None
        if "self_attn.q_proj.bias" in tensors:
            self.qkv_bias = torch.cat([tensors[f"self_attn.{n}_proj.bias"] for n in ("q", "k", "v")])
        self.o_weight = tensors["self_attn.o_proj.weight"]
        self.gate_up_weight = torch.cat(
            [tensors["mlp.gate_proj.weight"], tensors["mlp.up_proj.weight"]], dim=0
        ).contiguous()
        self.down_weight = tensors["mlp.down_proj.weight"]
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim

    def project_qkv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalise hidden states [T, hidden] and return pre-RoPE q, k, v as [1, heads, T, head_dim]."""
        cfg = self.cfg
        x = rms_norm(h, self.input_norm, cfg.rms_norm_eps)
        qkv = self.qkv_linear(x)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        t = h.shape[0]
        q = q.view(t, cfg.num_heads, cfg.head_dim).transpose(0, 1).unsqueeze(0)
        k = k.view(t, cfg.num_kv_heads, cfg.head_dim).transpose(0, 1).unsqueeze(0)
        v = v.view(t, cfg.num_kv_heads, cfg.head_dim).transpose(0, 1).unsqueeze(0)
        return q, k, v

    def finish(self, h: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Output projection, residual, MLP and residual; `attn` is [1, heads, T, head_dim]."""
        t = h.shape[0]
        h = h + self.o_linear(attn.squeeze(0).transpose(0, 1).reshape(t, self.q_size))
        x = rms_norm(h, self.post_norm, self.cfg.rms_norm_eps)
        gate, up = self.gate_up_linear(x).chunk(2, dim=-1)
        return h + self.down_linear(F.silu(gate) * up)

    # The four projections, each [T, in] -> [T, out]; a layer over another runtime's modules
    # (engine/vllm/worker_model.py) overrides these and keeps the steps above.

    def qkv_linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.qkv_weight, self.qkv_bias)

    def o_linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.o_weight)

    def gate_up_linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.gate_up_weight)

    def down_linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.down_weight)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Grouped-query attention through SDPA; `mask` [Tq, Tk] is boolean (True: may attend) or additive."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
