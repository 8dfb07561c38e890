"""Writing token-major K/V into vLLM's paged KV cache, by slot mapping, in each backend's layout.

vLLM (0.32) hands every attention layer one tensor whose logical shape is
[num_blocks, kv_heads, block_size, 2 * head_dim]: token `p` of a request lives in block
`block_ids[p // block_size]` at offset `p % block_size`, its slot being `block * block_size + offset`.
What the last axis means depends on the attention backend:

- CUDA FlashAttention reads it literally: K is [..., :head_dim] and V is [..., head_dim:] of the row
  (it views the tensor as `transpose(1, 2).split(head_dim, -1)`); the physical strides may differ
  (the tensor is a permuted view), which logical indexing respects. Older vLLM used a separate
  [2, num_blocks, block_size, kv_heads, head_dim] tensor; both are handled.
- The CPU backend reinterprets each (block, head) as block_size K rows then block_size V rows, and its
  kernels pack them per instruction set (K transposed for AVX-512, pairs of dims interleaved for
  AMX). Rather than re-deriving each packing we write through vLLM's own CPU cache-write op with the
  layer's instruction set, so the layout is whatever that kernel reads.

This module imports vLLM only inside the CPU writer, so the FlashAttention transform is testable on
any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch


def slot_mapping(block_ids: Sequence[int], block_size: int, start: int, end: int) -> torch.Tensor:
    """Slots of token positions [start, end) of a request whose blocks are `block_ids`, in order."""
    if end > len(block_ids) * block_size:
        raise ValueError(f"positions up to {end} need more than {len(block_ids)} blocks of {block_size}")
    positions = torch.arange(start, end, dtype=torch.long)
    blocks = torch.as_tensor(list(block_ids), dtype=torch.long)
    return blocks[positions // block_size] * block_size + positions % block_size


class PagedWriter(Protocol):
    def write(
        self, layer: str, kv_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor
    ) -> None:
        """Put k, v ([tokens, kv_heads, head_dim]) at `slots` of one layer's paged cache."""
        ...


class FlashLayoutWriter:
    """CUDA FlashAttention's layout, as plain tensor indexing (works on any device)."""

    def write(
        self, layer: str, kv_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor
    ) -> None:
        slots = slots.to(kv_cache.device)
        k, v = k.to(kv_cache.device, kv_cache.dtype), v.to(kv_cache.device, kv_cache.dtype)
        if kv_cache.dim() == 5 and kv_cache.shape[0] == 2:  # [2, blocks, block_size, heads, dim]
            block_size = kv_cache.shape[2]
            blocks, offsets = slots // block_size, slots % block_size
            kv_cache[0][blocks, offsets] = k
            kv_cache[1][blocks, offsets] = v
            return
        if kv_cache.dim() != 4 or kv_cache.shape[-1] != 2 * k.shape[-1]:
            raise ValueError(f"unexpected FlashAttention KV cache shape {tuple(kv_cache.shape)}")
        block_size, dim = kv_cache.shape[2], k.shape[-1]
        blocks, offsets = slots // block_size, slots % block_size
        # [blocks, heads, offsets, :] indexed with two index tensors around a slice: rows [T, heads, 2D]
        kv_cache[blocks, :, offsets, :dim] = k
        kv_cache[blocks, :, offsets, dim:] = v


class CpuLayoutWriter:
    """vLLM's CPU attention layout, written by vLLM's own cache-write kernel for each layer's ISA."""

    def __init__(self, isa_of: dict[str, str]) -> None:
        self.isa_of = isa_of

    def write(
        self, layer: str, kv_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slots: torch.Tensor
    ) -> None:
        from vllm import _custom_ops as ops

        blocks, heads, block_size, _ = kv_cache.shape
        key_cache, value_cache = kv_cache.view(blocks, heads, 2 * block_size, -1).chunk(2, dim=2)
        k, v = k.to(kv_cache.dtype).contiguous(), v.to(kv_cache.dtype).contiguous()
        ops.cpu_attn_reshape_and_cache(k, v, key_cache, value_cache, slots, self.isa_of[layer])


def writer_for(backend_name: str, isa_of: dict[str, str]) -> PagedWriter:
    """The writer for vLLM's attention backend `backend_name`; ValueError for one we cannot write."""
    if backend_name == "CPU_ATTN":
        return CpuLayoutWriter(isa_of)
    if backend_name.startswith("FLASH_ATTN"):
        return FlashLayoutWriter()
    raise ValueError(f"no KV writer for vLLM attention backend {backend_name!r}")
