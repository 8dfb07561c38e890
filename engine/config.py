"""Typed, frozen configuration of the engine and of the model architecture it runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.blend.options import GateConfig
from engine.vllm.options import VllmOptions

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")

DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a Llama-family decoder, read from a Hugging Face `config.json`."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]

    @classmethod
    def from_dir(cls, model_dir: Path) -> ModelConfig:
        raw = json.loads((model_dir / "config.json").read_text())
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        model_type = raw.get("model_type", "")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {model_type!r}; supported: {SUPPORTED_MODEL_TYPES}")
        num_heads = int(raw["num_attention_heads"])
        hidden = int(raw["hidden_size"])
        # transformers >= 5 nests RoPE settings under `rope_parameters`; older configs keep them flat.
        rope = dict(raw.get("rope_parameters") or {})
        theta = float(rope.pop("rope_theta", raw.get("rope_theta", 10000.0)))
        scaling = raw.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        eos = raw.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        return cls(
            model_type=model_type,
            vocab_size=int(raw["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(raw["intermediate_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(raw.get("num_key_value_heads") or num_heads),
            head_dim=int(raw.get("head_dim") or hidden // num_heads),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling=dict(scaling) if scaling else None,
            max_position_embeddings=int(raw.get("max_position_embeddings", 4096)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            attention_bias=bool(raw.get("attention_bias", model_type == "qwen2")),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_ids=eos_ids,
        )


@dataclass(frozen=True)
class EngineConfig:
    """Everything the torch engine needs to run; built once by the caller from the app settings."""

    model_dir: Path
    dtype: str = "bfloat16"
    device: str = "auto"  # auto | cpu | cuda | cuda:N (engine/device.py); auto: the GPU when torch sees one
    num_threads: int | None = None
    max_context: int | None = None  # None: the model's own max_position_embeddings
    max_new_tokens_limit: int = 1024
    chunk_cache_bytes: int = 2 << 30  # in-process chunk KV cache when no store is given
    default_system_prompt: str = "You are a helpful assistant. Answer the question using the documents."
    extra: dict[str, Any] = field(default_factory=dict)
    # Continuous batching (engine/scheduler.py); max_batch_size 0 turns it off: one request at a time.
    max_batch_size: int = 8
    queue_size: int = 32  # requests waiting for a place in the batch
    prefill_chunk_tokens: int = 64  # prefill work per step, in tokens through the whole model
    vllm: VllmOptions = field(default_factory=VllmOptions)  # the vLLM backend's settings
    blend_gate: GateConfig = field(default_factory=GateConfig)  # checked once at load

    def scheduler_config(self) -> SchedulerConfig:
        return SchedulerConfig(
            max_batch_size=self.max_batch_size,
            max_waiting=self.queue_size,
            prefill_chunk_tokens=self.prefill_chunk_tokens,
        )

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose one of {sorted(DTYPES)}")
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class SchedulerConfig:
    """Limits of the batch scheduler."""

    max_batch_size: int = 8  # sequences decoded together (and prefilling) at most
    max_waiting: int = 32  # requests queued behind a full batch before QueueFull
    prefill_chunk_tokens: int = 64  # prefill work per step, in tokens through the whole model
    step_log_size: int = 4096  # recent steps kept for inspection
    # Admission and prefill order: shortest remaining prefill first, less this many tokens per second
    # waited (a 6,000-token cold prompt overtakes a fresh 200-token one after ~29 s).
    aging_tokens_per_s: float = 200.0
    # Background work (write-backs, ingestion) gets a slice at least this often under interactive load.
    background_aging_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.max_waiting < 0:
            raise ValueError("max_waiting must be >= 0")
        if self.prefill_chunk_tokens < 1:
            raise ValueError("prefill_chunk_tokens must be >= 1")
