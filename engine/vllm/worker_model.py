"""Our Llama forward (engine/model.py) over the modules of vLLM's own loaded model, in vLLM's worker.

The blend code (engine/blend) needs a model whose layers run as separate steps (norm + q/k/v
projection, then output projection + MLP), with the attention done by us over explicit K/V. vLLM's
Llama layers fuse those steps in one `forward` that attends through its paged cache, so instead of
calling them we build a `LlamaModel` from their parts, copying nothing:

- norms, the embedding and the LM head are vLLM's parameters themselves (the embedding and head
  sliced to the checkpoint's vocabulary: vLLM pads them);
- the four projections call vLLM's linear modules (`qkv_proj`, `o_proj`, `gate_up_proj`,
  `down_proj`: q/k/v and gate/up already fused, in the order our layer splits them). A view of
  their weights is not possible everywhere: on the CPU vLLM packs each linear weight into its GEMM
  kernel's own format after loading and drops the parameter (an empty tensor is left), so the
  module's own `forward` is the only way to its weights there. On a GPU the same calls run vLLM's
  kernels on the device.

Only tensor-parallel size 1 is supported (a sharded module would need its all-reduce, which runs
inside vLLM's forward context only).
"""

from __future__ import annotations

from typing import Any

import torch

from engine.config import ModelConfig
from engine.layers import DecoderLayer
from engine.model import LlamaModel


class VllmLayer(DecoderLayer):
    """One decoder layer whose weights stay in vLLM's module `layer`."""

    def __init__(self, cfg: ModelConfig, layer: Any) -> None:  # no super().__init__: nothing to own
        self.cfg = cfg
        attn, mlp = layer.self_attn, layer.mlp
        self.input_norm = layer.input_layernorm.weight.detach()
        self.post_norm = layer.post_attention_layernorm.weight.detach()
        self.qkv_bias = None  # applied by vLLM's qkv_proj, with its weight
        self._qkv, self._o = attn.qkv_proj, attn.o_proj
        self._gate_up, self._down = mlp.gate_up_proj, mlp.down_proj
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim

    def qkv_linear(self, x: torch.Tensor) -> torch.Tensor:
        return _output(self._qkv(x))

    def o_linear(self, x: torch.Tensor) -> torch.Tensor:
        return _output(self._o(x))

    def gate_up_linear(self, x: torch.Tensor) -> torch.Tensor:
        return _output(self._gate_up(x))

    def down_linear(self, x: torch.Tensor) -> torch.Tensor:
        return _output(self._down(x))


def _output(result: Any) -> torch.Tensor:
    """vLLM's linear layers return (output, bias to add later); the bias is None unless asked for."""
    out, bias = result if isinstance(result, tuple) else (result, None)
    return out if bias is None else out + bias


def model_on_vllm(vllm_model: Any, cfg: ModelConfig, max_positions: int) -> LlamaModel:
    """A `LlamaModel` over vLLM's `*ForCausalLM` module (Llama, Mistral, Qwen2: the same names)."""
    inner = vllm_model.model
    vocab = cfg.vocab_size
    embed = inner.embed_tokens.weight.detach()[:vocab]
    head = vllm_model.lm_head.weight.detach()[:vocab] if hasattr(vllm_model, "lm_head") else embed
    if head.numel() == 0:  # a head whose weight was packed away: the tied embedding is the same
        head = embed
    layers: list[DecoderLayer] = [VllmLayer(cfg, layer) for layer in inner.layers]
    if len(layers) != cfg.num_layers:
        raise ValueError(f"vLLM's model has {len(layers)} layers, the config {cfg.num_layers}")
    return LlamaModel.from_parts(cfg, embed, inner.norm.weight.detach(), head, layers, max_positions)


def shared_tensors(model: LlamaModel, vllm_model: Any) -> int:
    """How many of `model`'s own tensors lie in the storage of one of vLLM's parameters (all of them,
    when nothing was copied)."""
    owned = {p.untyped_storage().data_ptr() for p in vllm_model.parameters()}
    mine = [model.embed, model.final_norm, model.lm_head]
    for layer in model.layers:
        mine += [layer.input_norm, layer.post_norm]
    return sum(t.untyped_storage().data_ptr() in owned for t in mine)
