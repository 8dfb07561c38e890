"""Slot mapping and the CUDA FlashAttention layout transform, checked on CPU tensors.

No CUDA here, so the FlashAttention writer is checked against how FlashAttention reads its cache:
`kv_cache.transpose(1, 2).split(head_dim, -1)` gives K and V as [blocks, block_size, heads, dim], and a
sequence's token p is row p % block_size of block block_table[p // block_size].
"""

from __future__ import annotations

import pytest
import torch

from engine.vllm.paged_kv import FlashLayoutWriter, slot_mapping, writer_for

BLOCKS, HEADS, BLOCK_SIZE, DIM = 7, 3, 16, 8


def test_slot_mapping_follows_the_block_table() -> None:
    slots = slot_mapping([5, 2, 9], block_size=4, start=2, end=10)
    assert slots.tolist() == [22, 23, 8, 9, 10, 11, 36, 37]


def test_slot_mapping_refuses_positions_beyond_the_blocks() -> None:
    with pytest.raises(ValueError, match="more than 2 blocks"):
        slot_mapping([1, 2], block_size=4, start=0, end=9)


def _read_like_flash_attention(kv_cache: torch.Tensor, block_table: list[int], length: int):
    key_cache, value_cache = kv_cache.transpose(1, 2).split(DIM, dim=-1)
    rows = [(block_table[p // BLOCK_SIZE], p % BLOCK_SIZE) for p in range(length)]
    k = torch.stack([key_cache[b, o] for b, o in rows])
    v = torch.stack([value_cache[b, o] for b, o in rows])
    return k, v


@pytest.mark.parametrize("physical", ["BHNC", "BNHC"])
def test_flash_writer_puts_each_token_where_flash_attention_reads_it(physical: str) -> None:
    torch.manual_seed(0)
    if physical == "BHNC":
        kv_cache = torch.zeros(BLOCKS, HEADS, BLOCK_SIZE, 2 * DIM)
    else:  # token-major memory, seen through the logical [blocks, heads, block_size, 2 * dim] view
        kv_cache = torch.zeros(BLOCKS, BLOCK_SIZE, HEADS, 2 * DIM).permute(0, 2, 1, 3)
    block_table, length = [4, 0, 6], 40
    k, v = torch.randn(length, HEADS, DIM), torch.randn(length, HEADS, DIM)
    FlashLayoutWriter().write("layer.0", kv_cache, k, v, slot_mapping(block_table, BLOCK_SIZE, 0, length))
    got_k, got_v = _read_like_flash_attention(kv_cache, block_table, length)
    assert torch.equal(got_k, k) and torch.equal(got_v, v)
    untouched = [b for b in range(BLOCKS) if b not in block_table]
    assert not kv_cache[untouched].any()
    # the unused tail of the last block stays empty
    assert not kv_cache[6, :, length - 2 * BLOCK_SIZE :].any()


def test_flash_writer_fills_a_range_after_a_local_hit_without_touching_it() -> None:
    kv_cache = torch.full((BLOCKS, HEADS, BLOCK_SIZE, 2 * DIM), 7.0)
    block_table, start, end = [1, 3], 10, 25
    k, v = torch.randn(end - start, HEADS, DIM), torch.randn(end - start, HEADS, DIM)
    FlashLayoutWriter().write("l", kv_cache, k, v, slot_mapping(block_table, BLOCK_SIZE, start, end))
    got_k, got_v = _read_like_flash_attention(kv_cache, block_table, end)
    assert torch.equal(got_k[start:], k) and torch.equal(got_v[start:], v)
    assert bool((got_k[:start] == 7.0).all()) and bool((got_v[:start] == 7.0).all())


def test_flash_writer_handles_the_older_split_layout() -> None:
    kv_cache = torch.zeros(2, BLOCKS, BLOCK_SIZE, HEADS, DIM)
    block_table, length = [2, 5], 20
    k, v = torch.randn(length, HEADS, DIM), torch.randn(length, HEADS, DIM)
    FlashLayoutWriter().write("l", kv_cache, k, v, slot_mapping(block_table, BLOCK_SIZE, 0, length))
    for p in range(length):
        b, o = block_table[p // BLOCK_SIZE], p % BLOCK_SIZE
        assert torch.equal(kv_cache[0, b, o], k[p]) and torch.equal(kv_cache[1, b, o], v[p])


def test_flash_writer_refuses_a_cache_of_another_shape() -> None:
    with pytest.raises(ValueError, match="unexpected FlashAttention KV cache shape"):
        FlashLayoutWriter().write(
            "l", torch.zeros(2, 3, 4), torch.zeros(1, 1, DIM), torch.zeros(1, 1, DIM), torch.zeros(1).long()
        )


def test_writer_choice_names_an_unknown_backend() -> None:
    assert isinstance(writer_for("FLASH_ATTN", {}), FlashLayoutWriter)
    with pytest.raises(ValueError, match="TRITON_ATTN"):
        writer_for("TRITON_ATTN", {})
