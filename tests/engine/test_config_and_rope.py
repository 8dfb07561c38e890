from __future__ import annotations

from typing import TypedDict

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from engine.config import ModelConfig
from engine.rope import RotaryTable, apply_rope, inverse_frequencies


class Sizes(TypedDict):
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int


# typed apart from model_type so that they can also be passed to transformers' LlamaConfig
SIZES: Sizes = {
    "vocab_size": 100,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
}
BASE: dict[str, object] = {"model_type": "llama", **SIZES}


def test_reads_old_and_new_rope_layouts() -> None:
    old = ModelConfig.from_dict({**BASE, "rope_theta": 5e5})
    new = ModelConfig.from_dict({**BASE, "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}})
    assert old.rope_theta == new.rope_theta == 5e5
    assert old.rope_scaling is None and new.rope_scaling is None
    assert old.head_dim == 16 and old.num_kv_heads == 2


def test_rejects_unsupported_architectures() -> None:
    with pytest.raises(ValueError, match="unsupported model_type"):
        ModelConfig.from_dict({**BASE, "model_type": "gpt2"})


def test_llama3_scaling_matches_transformers() -> None:
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    ours, _ = inverse_frequencies(ModelConfig.from_dict({**BASE, "rope_theta": 5e5, "rope_scaling": scaling}))
    hf_cfg = LlamaConfig(**SIZES, rope_parameters={"rope_theta": 5e5, **scaling})
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_cfg, "cpu")
    assert torch.allclose(ours, theirs.float(), rtol=1e-5)


def test_rotation_is_relative() -> None:
    """q.k after rotation depends only on the distance between positions."""
    cfg = ModelConfig.from_dict({**BASE, "rope_theta": 1e4})
    table = RotaryTable(cfg, 64, torch.float32)
    q, k = torch.randn(1, 1, 16), torch.randn(1, 1, 16)

    def score(pq: int, pk: int) -> float:
        cq, sq = table.lookup(torch.tensor([pq]))
        ck, sk = table.lookup(torch.tensor([pk]))
        return float((apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum())

    assert score(10, 3) == pytest.approx(score(40, 33), rel=1e-4)
