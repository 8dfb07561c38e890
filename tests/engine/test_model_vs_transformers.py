"""Our forward against transformers' own implementation of the same weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pytest
import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from engine.config import ModelConfig
from engine.model import LlamaModel
from engine.prompt import PromptBuilder
from engine.torch_engine import TorchEngine

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889 for the World's Fair.",
    "Mount Everest, at 8,849 metres, is Earth's highest mountain above sea level, in the Himalayas.",
]
QUESTION = "When was the Eiffel Tower completed?"


class ReferenceLM(Protocol):
    """The parts of a transformers causal LM these tests call."""

    config: PretrainedConfig

    def __call__(self, input_ids: torch.Tensor) -> Any: ...

    def generate(self, inputs: torch.Tensor, **kwargs: Any) -> object: ...


def _reference(model_dir: Path, dtype: torch.dtype) -> ReferenceLM:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    return model


def _prompt_ids(engine: TorchEngine) -> torch.Tensor:
    return torch.tensor(PromptBuilder(engine.tokenizer).build(QUESTION, DOCS).ids)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 2e-3), (torch.bfloat16, 0.35)])
def test_last_token_logits_match(
    engine: TorchEngine, model_dir: Path, dtype: torch.dtype, atol: float
) -> None:
    ids = _prompt_ids(engine)
    ours = LlamaModel.load(model_dir, ModelConfig.from_dir(model_dir), dtype, 4096)
    ref = _reference(model_dir, dtype)
    with torch.inference_mode():
        got = ours.forward(ids, ours.new_cache(len(ids)))
        want = ref(ids[None]).logits[0, -1].float()
    assert got.shape == want.shape == (ref.config.vocab_size,)
    assert (got - want).abs().max().item() < atol
    assert got.argmax() == want.argmax()
    assert torch.nn.functional.cosine_similarity(got, want, dim=0) > 0.9999


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_generation_matches_transformers(
    engine: TorchEngine, model_dir: Path, dtype: torch.dtype
) -> None:
    ids = _prompt_ids(engine)
    n_new = 40
    ours = LlamaModel.load(model_dir, ModelConfig.from_dir(model_dir), dtype, 4096)
    ref = _reference(model_dir, dtype)
    with torch.inference_mode():
        kv = ours.new_cache(len(ids) + n_new)
        logits = ours.forward(ids, kv)
        mine: list[int] = []
        for _ in range(n_new):
            token = int(logits.argmax())
            mine.append(token)
            if token in engine.eos_ids:
                break
            logits = ours.forward(torch.tensor([token]), kv)
        theirs = ref.generate(ids[None], max_new_tokens=n_new, do_sample=False, pad_token_id=0)
    assert isinstance(theirs, torch.Tensor)  # plain token ids: no dict output was asked for
    assert len(mine) >= 8
    assert mine == theirs[0, len(ids) : len(ids) + len(mine)].tolist()


@pytest.mark.parametrize("cut_share", [0.33, 0.9])
def test_chunked_prefill_equals_one_prefill(engine: TorchEngine, cut_share: float) -> None:
    """Prefilling in pieces (padded causal or explicit mask over cached rows) equals one causal prefill."""
    ids = _prompt_ids(engine)
    model = engine.model
    whole = model.forward(ids, model.new_cache(len(ids)), all_logits=True)
    kv = model.new_cache(len(ids))
    cut = int(len(ids) * cut_share)
    first = model.forward(ids[:cut], kv, all_logits=True)
    rest = model.forward(ids[cut:], kv, all_logits=True)
    pieces = torch.cat([first, rest])
    tol = 1e-3 if model.dtype == torch.float32 else 0.3
    assert (pieces - whole).abs().max().item() < tol
    assert torch.equal(pieces.argmax(-1), whole.argmax(-1))
