"""Per-request blending options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BlendMode = Literal["full", "prefix", "reuse", "cacheblend", "cachecraft"]
BLEND_MODES: tuple[BlendMode, ...] = ("full", "prefix", "reuse", "cacheblend", "cachecraft")
# cachecraft: on MuSiQue it lost less answer log-probability than cacheblend at the same recompute
# ratio, and reached its first token sooner (no check layer over every token): bench/results/blend_quality*
DEFAULT_MODE: BlendMode = "cachecraft"
DEFAULT_RATIO = 0.15


@dataclass(frozen=True)
class BlendOptions:
    """How a request reuses chunk caches.

    - full: no reuse, one causal prefill.
    - prefix: reuse only pieces whose cache was computed after exactly the same tokens (as vLLM's
      prefix caching does); everything after the first miss is prefilled.
    - reuse: every cached chunk is reused as is (ratio 0); only uncached pieces and the query are computed.
    - cacheblend: layers before and at `check_layer` run on all tokens; the `ratio` share of cached
      tokens whose K/V deviate most there is recomputed through the remaining layers.
    - cachecraft: `ratio` of the moved cached tokens is recomputed, split into per-chunk budgets by
      the Cache-Craft statistics stored with each chunk (context impact, prefix overlap, order
      penalty) and chosen by each token's recorded attention on context; no check layer. A chunk
      whose cached context equals its current one is reused with no recompute.
    """

    mode: BlendMode = DEFAULT_MODE
    ratio: float = DEFAULT_RATIO
    check_layer: int = 1

    def __post_init__(self) -> None:
        if self.mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {self.mode!r}; choose one of {BLEND_MODES}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError("blend ratio must be within [0, 1]")
        if self.check_layer < 0:
            raise ValueError("check_layer must be >= 0")

    @property
    def reuses(self) -> bool:
        return self.mode != "full"
