"""The shared-file handoff of blended K/V: what is written is what the worker maps back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.config import ModelConfig
from engine.kv_cache import KVCache
from engine.vllm.handoff import HandoffDir, HandoffSpec, read_handoff

CFG = ModelConfig.from_dict(
    {
        "model_type": "llama",
        "vocab_size": 10,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
)


def _kv(dtype: torch.dtype, rows: int) -> KVCache:
    kv = KVCache(CFG, rows + 5, dtype)
    for i in range(CFG.num_layers):
        kv.k[i].copy_(torch.randn_like(kv.k[i], dtype=torch.float32).to(dtype))
        kv.v[i].copy_(torch.randn_like(kv.v[i], dtype=torch.float32).to(dtype))
    return kv


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_is_token_major_and_exact(tmp_path: Path, dtype: torch.dtype) -> None:
    handoff = HandoffDir(str(tmp_path))
    kv = _kv(dtype, 11)
    spec = handoff.write(kv, 11)
    assert (spec.layers, spec.tokens, spec.kv_heads, spec.head_dim) == (3, 11, 2, 4)
    assert Path(spec.path).stat().st_size == spec.nbytes
    k, v = read_handoff(HandoffSpec.from_params(spec.to_params()), str(handoff.path))
    assert k.dtype == dtype and k.shape == (3, 11, 2, 4)
    for i in range(3):
        assert torch.equal(k[i], kv.k[i][0, :, :11].transpose(0, 1))
        assert torch.equal(v[i], kv.v[i][0, :, :11].transpose(0, 1))
    handoff.discard(spec)
    with pytest.raises(FileNotFoundError):
        read_handoff(spec)
    handoff.close()
    assert not handoff.path.exists()


def test_reader_refuses_a_file_of_the_wrong_size_or_place(tmp_path: Path) -> None:
    handoff = HandoffDir(str(tmp_path))
    spec = handoff.write(_kv(torch.float32, 4), 4)
    longer = HandoffSpec(spec.path, 5, spec.layers, spec.kv_heads, spec.head_dim, spec.dtype)
    with pytest.raises(ValueError, match="expected"):
        read_handoff(longer)
    with pytest.raises(ValueError, match="outside"):
        read_handoff(spec, str(tmp_path / "elsewhere"))
    handoff.close()


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {"path": "x"},
        {"path": "x", "tokens": 0, "layers": 1, "kv_heads": 1, "head_dim": 1, "dtype": "float32"},
        {"path": "x", "tokens": 1, "layers": 1, "kv_heads": 1, "head_dim": 1, "dtype": "int8"},
    ],
)
def test_malformed_specs_are_refused(raw: object) -> None:
    with pytest.raises(ValueError):
        HandoffSpec.from_params(raw)
