"""The decode batch's K/V: dense slots, rows kept through moves, capacity that follows the sequences."""

from __future__ import annotations

import torch

from engine.batch_kv import ROW_BLOCK, BatchKV
from engine.config import ModelConfig
from engine.kv_cache import KVCache

CFG = ModelConfig.from_dict(
    {
        "model_type": "llama",
        "vocab_size": 32,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
)


def _filled(length: int, value: float) -> KVCache:
    kv = KVCache(CFG, length, torch.float32)
    for layer in range(CFG.num_layers):
        kv.k[layer].fill_(value + layer)
        kv.v[layer].fill_(-value - layer)
    kv.length = length
    return kv


def _rows(batch: BatchKV, slot: int, length: int) -> tuple[float, float]:
    k, v = batch.k[1][slot, :, :length], batch.v[1][slot, :, :length]
    assert bool((k == k.flatten()[0]).all()) and bool((v == v.flatten()[0]).all())
    return float(k.flatten()[0]), float(v.flatten()[0])


def test_add_remove_keeps_slots_dense_and_rows_intact() -> None:
    batch = BatchKV(CFG, torch.float32, max_slots=4)
    for i, length in enumerate((5, 9, 3)):
        assert batch.add(_filled(length, 10.0 * (i + 1)), length, length + 20) == i
    assert batch.lengths == [5, 9, 3] and batch.rows_in_use() == 17
    assert batch.remove(0) == 2  # the last sequence moved into the freed slot
    assert batch.lengths == [3, 9]
    assert _rows(batch, 0, 3) == (31.0, -31.0)
    assert _rows(batch, 1, 9) == (21.0, -21.0)
    assert batch.remove(1) is None
    assert batch.lengths == [3]


def test_capacity_grows_with_joins_shrinks_with_leaves_and_an_empty_batch_holds_nothing() -> None:
    batch = BatchKV(CFG, torch.float32, max_slots=8)
    batch.add(_filled(4, 1.0), 4, 10)
    assert batch.capacity == ROW_BLOCK and batch.slots == 1
    batch.add(_filled(6, 2.0), 6, 3 * ROW_BLOCK + 1)
    assert batch.capacity == 4 * ROW_BLOCK and batch.slots == 2
    assert _rows(batch, 0, 4) == (2.0, -2.0)  # copied across the reallocation
    batch.remove(1)  # the long one leaves: capacity falls back
    assert batch.capacity == ROW_BLOCK
    assert _rows(batch, 0, 4) == (2.0, -2.0)
    batch.remove(0)
    assert batch.size == 0 and batch.nbytes() == 0 and batch.capacity == 0


def test_unused_rows_are_zero_so_masked_padding_stays_finite() -> None:
    batch = BatchKV(CFG, torch.float32, max_slots=2)
    batch.add(_filled(3, 1.0), 3, 8)
    assert float(batch.k[0][0, :, 3:].abs().sum()) == 0.0
    assert bool(torch.isfinite(batch.k[0]).all())
