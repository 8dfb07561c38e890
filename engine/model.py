"""Our forward pass for Llama-family decoders over explicit per-layer K/V tensors."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.kv_cache import KVCache
from engine.layers import DecoderLayer, attention, rms_norm
from engine.rope import RotaryTable, apply_rope
from engine.weights import load_state_dict


class LlamaModel:
    """Inference-only Llama / Mistral / Qwen2 decoder.

    Rules: every call runs under `torch.inference_mode()`; positions are absolute token positions;
    `forward` writes the K/V of its tokens into `kv` at rows [kv.length, kv.length + T) and advances
    `kv.length`.
    """

    def __init__(self, cfg: ModelConfig, tensors: dict[str, torch.Tensor], max_positions: int) -> None:
        embed = tensors["embed_tokens.weight"]
        layers = [
            DecoderLayer(
                cfg, {k.split(".", 2)[2]: t for k, t in tensors.items() if k.startswith(f"layers.{i}.")}
            )
            for i in range(cfg.num_layers)
        ]
        lm_head = embed if cfg.tie_word_embeddings else tensors["lm_head.weight"]
        self._assemble(cfg, embed, tensors["norm.weight"], lm_head, layers, max_positions)

    def _assemble(
        self,
        cfg: ModelConfig,
        embed: torch.Tensor,
        final_norm: torch.Tensor,
        lm_head: torch.Tensor,
        layers: list[DecoderLayer],
        max_positions: int,
    ) -> None:
        self.cfg = cfg
        self.dtype = embed.dtype
        self.device = embed.device
        self.embed = embed
        self.final_norm = final_norm
        self.lm_head = lm_head
        self.layers = layers
        self.rope = RotaryTable(cfg, max_positions, self.dtype, self.device)

    @classmethod
    def from_parts(
        cls,
        cfg: ModelConfig,
        embed: torch.Tensor,
        final_norm: torch.Tensor,
        lm_head: torch.Tensor,
        layers: list[DecoderLayer],
        max_positions: int,
    ) -> LlamaModel:
        """A model over tensors and layers that someone else owns (engine/vllm/worker_model.py runs
        on vLLM's modules this way): nothing is copied."""
        model = cls.__new__(cls)
        model._assemble(cfg, embed, final_norm, lm_head, layers, max_positions)
        return model

    @classmethod
    def load(
        cls,
        model_dir: Path,
        cfg: ModelConfig,
        dtype: torch.dtype,
        max_positions: int,
        device: torch.device | None = None,
    ) -> LlamaModel:
        tensors = load_state_dict(model_dir, dtype, device or torch.device("cpu"))
        if "lm_head.weight" in tensors and "embed_tokens.weight" not in tensors:
            raise ValueError("checkpoint has no embed_tokens weight")
        return cls(cfg, tensors, max_positions)

    @classmethod
    def shell(cls, cfg: ModelConfig, dtype: torch.dtype, max_positions: int) -> LlamaModel:
        """Config, dtype, device and rope table with no weights, for a process whose model work runs
        elsewhere (the vLLM backend blending in vLLM's worker): placing cached K/V works, a forward
        fails (the embedding is empty)."""
        empty = torch.empty(0, cfg.hidden_size, dtype=dtype)
        return cls.from_parts(cfg, empty, torch.empty(0, dtype=dtype), empty, [], max_positions)

    def new_cache(self, capacity: int) -> KVCache:
        return KVCache(self.cfg, capacity, self.dtype, self.device)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Float32 logits of hidden states [T, hidden] after the final norm."""
        return F.linear(rms_norm(h, self.final_norm, self.cfg.rms_norm_eps), self.lm_head).float()

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, kv: KVCache, *, all_logits: bool = False) -> torch.Tensor:
        """Run tokens `ids` [T] at positions [kv.length, kv.length + T); return logits.

        Returns the last position's logits [vocab] by default, or [T, vocab] with `all_logits`.
        A prefill from an empty cache takes the causal fast path with no explicit mask.
        """
        ids = ids.to(self.device)
        start, t = kv.length, ids.shape[0]
        end = start + t
        if end > self.rope.max_positions:
            raise ValueError(f"position {end} exceeds the model's context of {self.rope.max_positions}")
        cos, sin = self.rope.lookup(torch.arange(start, end))
        # Continuing a prefill (start > 0, several tokens): when the new tokens are a large share of the
        # sequence, zero-padded queries through the causal kernel beat an explicit mask (about 2x here).
        padded = start > 0 and t > 1 and 4 * t >= end
        mask = None
        if start > 0 and t > 1 and not padded:
            mask = torch.ones(t, end, dtype=torch.bool, device=self.device).tril(diagonal=start)
        h = self.embed[ids]
        for i, layer in enumerate(self.layers):
            q, k, v = layer.project_qkv(h)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            kv.wait_layer(i)  # placed chunk K/V still on their way to the device
            kv.write(i, start, k, v)
            if start == 0:
                o = attention(q, k, v, causal=t > 1)
            elif padded:
                keys, values = kv.view(i, end)
                full_q = q.new_zeros(q.shape[0], q.shape[1], end, q.shape[3])
                full_q[:, :, start:] = q
                o = attention(full_q, keys, values, causal=True)[:, :, start:]
            else:
                keys, values = kv.view(i, end)
                o = attention(q, keys, values, mask=mask)
            h = layer.finish(h, o)
        kv.length = end
        return self.logits(h) if all_logits else self.logits(h[-1:])[0]
