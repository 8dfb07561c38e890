"""The model's prefill speed, measured, for selection budgets in estimated milliseconds
(retrieval/selection/cost.py prices chunks with it)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.device import synchronize
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
        synchronize(model.device)  # GPU kernels run asynchronously: wait for them before timing
        best = min(best, time.perf_counter() - started)
    return n / max(best, 1e-9)


@dataclass(frozen=True)
class PrefillSpeed:
    """A prefill time model t(n) = n / tokens_per_s + pair_s * n^2 / 2: per-token work plus attention
    over the n^2 / 2 query-key pairs of a causal prefill (CostModel's `tokens_per_s` and `pair_s`)."""

    tokens_per_s: float
    pair_s: float


def measure_prefill_speed(
    model: LlamaModel, short: int = 256, long: int = 1024, rounds: int = 2
) -> PrefillSpeed:
    """Fit PrefillSpeed to the best-of-`rounds` times of two causal prefills, `short` and `long` tokens.

    Per token, t(n) / n = 1 / tokens_per_s + pair_s * n / 2 is a line in n; two lengths fix it. A
    noisy fit that would make attention free or negative keeps the linear figure of the long prefill.
    """
    if not 1 <= short < long:
        raise ValueError("need 1 <= short < long")
    per_token = {n: 1.0 / measure_prefill_tokens_per_s(model, n, rounds) for n in (short, long)}
    n_long = min(long, model.rope.max_positions)
    n_short = min(short, n_long - 1)
    slope = (per_token[long] - per_token[short]) / max(n_long - n_short, 1)
    pair_s = 2.0 * slope
    linear = per_token[short] - slope * n_short
    if pair_s <= 0.0 or linear <= 0.0:
        return PrefillSpeed(1.0 / per_token[long], 0.0)
    return PrefillSpeed(1.0 / linear, pair_s)
