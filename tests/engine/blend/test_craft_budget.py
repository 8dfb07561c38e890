"""Cache-Craft's budget split: proportional to the chunks' weights, capped, exact in total."""

from __future__ import annotations

import torch

from engine.blend.precompute import ChunkKV
from engine.blend.selection import craft_rows, split_budget


def test_split_is_proportional_and_sums_to_the_budget() -> None:
    assert split_budget(10, [1.0, 1.0], [100, 100]) == [5, 5]
    assert split_budget(9, [2.0, 1.0], [100, 100]) == [6, 3]
    assert sum(split_budget(7, [1.0, 1.0, 1.0], [100, 100, 100])) == 7


def test_a_capped_share_goes_to_the_others() -> None:
    assert split_budget(10, [10.0, 1.0], [3, 100]) == [3, 7]
    assert split_budget(50, [1.0, 1.0], [3, 4]) == [3, 4]  # never more than the chunks hold


def test_zero_weight_or_budget_takes_nothing() -> None:
    assert split_budget(0, [1.0, 2.0], [5, 5]) == [0, 0]
    assert split_budget(4, [0.0, 1.0], [5, 5]) == [0, 4]


def _chunk(length: int, cci: float, inter: list[float]) -> ChunkKV:
    k = torch.zeros(1, 1, length, 2)
    return ChunkKV(k, k.clone(), 0, {"cci": cci, "token_inter": inter})


def test_rows_follow_the_recorded_attention_on_context() -> None:
    forced = torch.tensor([20, 21])
    a = _chunk(4, 1.0, [0.1, 0.9, 0.2, 0.8])
    b = _chunk(4, 1.0, [0.5, 0.1, 0.3, 0.05])
    rows = craft_rows(forced, [(2, a), (10, b)], ratio=0.5)  # 4 of 8 tokens: 2 per chunk
    assert rows.tolist() == [3, 5, 10, 12, 20, 21]
