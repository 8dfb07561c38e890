"""Sampling parameters and the token sampler (greedy, temperature, top-p, seeded)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

# The seeds torch's generator accepts: signed or unsigned 64-bit integers.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token and when to stop. temperature 0 means greedy."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # log-probabilities of each produced token with this many alternatives (0: the token's own only);
    # None: not computed
    logprobs: int | None = None
    ignore_eos: bool = False  # decode on past end-of-sequence tokens up to max_tokens (benchmarks)

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError("max_tokens must be positive")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.seed is not None and not SEED_MIN <= self.seed <= SEED_MAX:
            raise ValueError(f"seed must be a 64-bit integer ({SEED_MIN}..{SEED_MAX})")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise ValueError("logprobs must be in 0..20")


class Sampler:
    """Picks token ids from float32 logits; reproducible for a given seed."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        seed = params.seed if params.seed is not None else random.randrange(2**63)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> int:
        p = self.params
        logits = logits.cpu()  # the token id is needed on the host anyway; the generator lives there
        if p.temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / p.temperature, dim=-1)
        if p.top_p < 1.0:
            probs = top_p_filter(probs, p.top_p)
        return int(torch.multinomial(probs, 1, generator=self.generator))


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches `top_p`, renormalised."""
    sorted_probs, order = probs.sort(descending=True)
    mass_before = sorted_probs.cumsum(-1) - sorted_probs
    drop = mass_before >= top_p
    drop[..., 0] = False  # the most likely token always stays (a top_p below float32's range is 0)
    sorted_probs[drop] = 0.0
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum()
