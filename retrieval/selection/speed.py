"""The engine's prefill speed, measured, for budgets in estimated milliseconds (cost.py)."""

from __future__ import annotations

import time

import torch

from engine.model import LlamaModel


def measure_prefill_tokens_per_s(model: LlamaModel, n_tokens: int = 512, rounds: int = 2) -> float:
    """Tokens per second of a causal prefill of `n_tokens`, the best of `rounds` after a warm-up pass.

    Measure once at start-up (it takes a few prefills) and pass the figure to CostModel; on a shared
    machine the best round is the least disturbed one.
    """
    if n_tokens < 1 or rounds < 1:
        raise ValueError("n_tokens and rounds must be >= 1")
    n = min(n_tokens, model.rope.max_positions)
    ids = torch.randint(100, 1000, (n,), generator=torch.Generator().manual_seed(0))
    model.forward(ids, model.new_cache(n))  # first pass pays one-off kernel set-up
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        model.forward(ids, model.new_cache(n))
        best = min(best, time.perf_counter() - started)
    return n / max(best, 1e-9)
