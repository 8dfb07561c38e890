"""The exact causal mask of recomputed rows, and moving chunk caches to new positions."""

from __future__ import annotations

import torch

from engine.blend.placement import place_entry
from engine.blend.precompute import precompute_chunk
from engine.blend.selective import causal_mask_for_rows, selective_prefill
from engine.prompt import Prompt
from engine.torch_engine import TorchEngine


def test_mask_rows_see_only_earlier_positions() -> None:
    rows = torch.tensor([0, 3, 4, 9])
    mask = causal_mask_for_rows(rows, 10)
    for i, r in enumerate(rows.tolist()):
        assert mask[i].tolist() == [j <= r for j in range(10)]


def test_recomputed_rows_match_dense_reference_and_never_see_the_future(
    engine: TorchEngine, rag_prompt: Prompt
) -> None:
    """With an exact cache for the other rows, recomputing any subset reproduces the full prefill.

    A superset mask (like the bottom-right one) would let a recomputed row attend to later keys and
    change its values, so the K/V of every layer would drift from the dense reference."""
    model = engine.model
    ids = torch.tensor(rag_prompt.ids)
    n = len(ids)
    dense = model.new_cache(n)
    want = model.forward(ids, dense)
    kv = model.new_cache(n)
    for layer in range(len(model.layers)):
        kv.k[layer][:, :, :n] = dense.k[layer][:, :, :n]
        kv.v[layer][:, :, :n] = dense.v[layer][:, :, :n]
        # Poison the rows to be recomputed: only fresh computation may fill them.
    g = torch.Generator().manual_seed(0)
    rows = torch.cat([torch.randperm(n - 1, generator=g)[: n // 5].sort().values, torch.tensor([n - 1])])
    for layer in range(len(model.layers)):
        kv.k[layer][:, :, rows] = 1e3
        kv.v[layer][:, :, rows] = 1e3
    got, used = selective_prefill(model, ids, kv, rows)
    assert torch.equal(used, rows)
    tol = 2e-3 if model.dtype == torch.float32 else 0.35
    assert (got - want).abs().max().item() < tol
    for layer in (1, len(model.layers) - 1):
        assert (kv.k[layer][:, :, :n] - dense.k[layer][:, :, :n]).abs().max().item() < tol * 10


def test_moved_chunk_layer0_equals_fresh_computation(engine: TorchEngine, rag_prompt: Prompt) -> None:
    """Layer 0 K/V depend only on tokens and positions, so a cache moved from offset a to b must equal
    one computed at b; deeper layers depend on the context and must not."""
    model = engine.model
    chunk_ids = torch.tensor(rag_prompt.pieces[2].ids)
    short_ctx = precompute_chunk(model, None, torch.tensor(rag_prompt.pieces[0].ids))
    long_ids = torch.tensor(rag_prompt.pieces[0].ids + rag_prompt.pieces[1].ids)
    long_ctx = precompute_chunk(model, None, long_ids)
    at_a = precompute_chunk(model, short_ctx, chunk_ids)
    at_b = precompute_chunk(model, long_ctx, chunk_ids)
    assert at_a.start != at_b.start
    kv = model.new_cache(at_b.start + len(chunk_ids))
    place_entry(kv, model.rope, at_a.k, at_a.v, at_a.start, at_b.start)
    moved_k = kv.k[0][0, :, at_b.start :]
    scale = at_b.k[0].abs().max().item()
    tol = (1e-5 if model.dtype == torch.float32 else 1e-2) * scale
    assert (moved_k - at_b.k[0]).abs().max().item() < tol
    assert (kv.v[0][0, :, at_b.start :] - at_b.v[0]).abs().max().item() < tol
    assert (at_a.k[5] - at_b.k[5]).abs().max().item() > 10 * tol  # context matters deeper down


def test_precompute_records_cache_craft_statistics(engine: TorchEngine, rag_prompt: Prompt) -> None:
    model = engine.model
    prefix = precompute_chunk(model, None, torch.tensor(rag_prompt.pieces[0].ids))
    chunk = precompute_chunk(model, prefix, torch.tensor(rag_prompt.pieces[1].ids))
    assert 0.5 <= float(chunk.craft["cci"]) < 1.0  # type: ignore[arg-type]
    scores = chunk.craft["token_inter"]
    assert isinstance(scores, list) and len(scores) == len(rag_prompt.pieces[1].ids)
    assert all(0.0 <= s <= 1.0 for s in scores)
