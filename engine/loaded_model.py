"""What every backend loads from a checkpoint directory: config, tokenizer, prompts, weights.

Both backends start from this (the torch engine serves with the model; the vLLM backend blends with
it beside vLLM), so the set-up and its rules live in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoTokenizer

from engine.config import EngineConfig, ModelConfig
from engine.device import resolve_device
from engine.dtype_probe import resolve_dtype
from engine.model import LlamaModel
from engine.prompt import PromptBuilder
from engine.weights import model_fingerprint


def eos_token_ids(cfg: EngineConfig, model_config: ModelConfig, tokenizer: object) -> frozenset[int]:
    """Every id that ends a sequence: the config's, the tokenizer's and the generation config's."""
    ids = set(model_config.eos_token_ids)
    tok_eos = getattr(tokenizer, "eos_token_id", None)
    if tok_eos is not None:
        ids.add(int(tok_eos))
    gen = cfg.model_dir / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return frozenset(ids)


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint loaded for serving. Rules: `max_context` never exceeds the model's own positions;
    `fingerprint` names the weights and the dtype, so chunk caches of another model or dtype never
    match; the weights sit on `device` (RAGBLEND_DEVICE, engine/device.py)."""

    cfg: EngineConfig
    model_config: ModelConfig
    dtype_name: str
    max_context: int
    tokenizer: Any
    prompts: PromptBuilder
    eos_ids: frozenset[int]
    model: LlamaModel
    fingerprint: str

    @property
    def device(self) -> torch.device:
        return self.model.device

    @classmethod
    def load(
        cls, cfg: EngineConfig, device: str | torch.device | None = None, weights: bool = True
    ) -> LoadedModel:
        """Load `cfg.model_dir` onto `device` (default: `cfg.device`, resolved). Without `weights`
        the model is a weightless shell (LlamaModel.shell): everything else is loaded."""
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        model_config = ModelConfig.from_dir(cfg.model_dir)
        target = resolve_device(cfg.device if device is None else device)
        dtype_name = resolve_dtype(cfg.dtype, target)
        max_context = min(
            cfg.max_context or model_config.max_position_embeddings, model_config.max_position_embeddings
        )
        tokenizer = AutoTokenizer.from_pretrained(str(cfg.model_dir))
        dtype = EngineConfig(cfg.model_dir, dtype=dtype_name).torch_dtype
        if weights:
            model = LlamaModel.load(cfg.model_dir, model_config, dtype, max_context, target)
        else:
            model = LlamaModel.shell(model_config, dtype, max_context)
        return cls(
            cfg=cfg,
            model_config=model_config,
            dtype_name=dtype_name,
            max_context=max_context,
            tokenizer=tokenizer,
            prompts=PromptBuilder(tokenizer),
            eos_ids=eos_token_ids(cfg, model_config, tokenizer),
            model=model,
            fingerprint=f"{model_fingerprint(cfg.model_dir)}-{dtype_name}",
        )
