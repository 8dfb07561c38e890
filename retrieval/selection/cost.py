"""What a combination of chunks costs to prefill now, given which chunks have a warm KV cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.blend.options import BLEND_MODES, DEFAULT_RATIO, BlendMode
from retrieval.selection.candidate import Candidate
from retrieval.selection.config import BudgetUnit


@dataclass(frozen=True)
class ChunkCosts:
    """Per-candidate costs in the budget's unit: at the first document position, and anywhere else.

    The two differ only in prefix mode. Costs are non-negative and appending a chunk never changes
    what the chunks before it cost, so a combination over budget has no descendant within it.
    """

    first: np.ndarray
    later: np.ndarray

    def of(self, seq: Sequence[int]) -> float:
        if not seq:
            return 0.0
        return float(self.first[seq[0]] + sum(self.later[i] for i in seq[1:]))

    def extend(self, cost: float, seq_len: int, index: int) -> float:
        """Cost of a combination of cost `cost` and length `seq_len` with candidate `index` appended."""
        return cost + float(self.first[index] if seq_len == 0 else self.later[index])


@dataclass(frozen=True)
class CostModel:
    """Tokens to prefill for a combination under the request's blend mode.

    A cold chunk costs all its tokens. A warm chunk (base KV cache in the store) costs the share of
    its tokens the blend mode recomputes:

    - full: 1.0, nothing is reused;
    - prefix: 1.0, except the first document, whose base cache (computed after the system prefix
      alone) is exactly its prefix-cache entry at that position: 0.0 there;
    - reuse: 0.0;
    - cacheblend, cachecraft: `ratio` of the tokens, plus `full_layer_share` of them for the layers
      cacheblend runs on every token (its check layers: (check_layer + 1) / num_layers).

    The query and the system prefix cost the same whatever is chosen, so they are not counted. With
    `tokens_per_s` (a measured prefill speed, see speed.py) costs convert to estimated milliseconds,
    linear in tokens: at the prompt sizes selection deals with the prefill is dominated by the
    per-token matmuls, not by attention.
    """

    mode: BlendMode = "cacheblend"
    ratio: float = DEFAULT_RATIO
    full_layer_share: float = 0.0
    tokens_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in BLEND_MODES:
            raise ValueError(f"mode: unknown blend mode {self.mode!r}; choose one of {BLEND_MODES}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"ratio must be within [0, 1], got {self.ratio}")
        if not 0.0 <= self.full_layer_share <= 1.0:
            raise ValueError(f"full_layer_share must be within [0, 1], got {self.full_layer_share}")
        if self.tokens_per_s is not None and not self.tokens_per_s > 0:
            raise ValueError(f"tokens_per_s must be > 0, got {self.tokens_per_s}")

    def warm_share(self, first: bool) -> float:
        """Share of a warm chunk's tokens that are prefilled, at the first document position or not."""
        if self.mode == "full":
            return 1.0
        if self.mode == "prefix":
            return 0.0 if first else 1.0
        if self.mode == "reuse":
            return 0.0
        return min(1.0, self.ratio + (1.0 - self.ratio) * self.full_layer_share)

    def tokens(self, candidate: Candidate, first: bool) -> float:
        share = self.warm_share(first) if candidate.warm else 1.0
        return candidate.n_tokens * share

    def to_unit(self, tokens: float, unit: BudgetUnit) -> float:
        if unit == "tokens":
            return tokens
        if self.tokens_per_s is None:
            raise ValueError("budget_unit 'ms' needs a measured prefill speed (tokens_per_s)")
        return 1000.0 * tokens / self.tokens_per_s

    def costs(self, candidates: Sequence[Candidate], unit: BudgetUnit = "tokens") -> ChunkCosts:
        first = [self.to_unit(self.tokens(c, True), unit) for c in candidates]
        later = [self.to_unit(self.tokens(c, False), unit) for c in candidates]
        return ChunkCosts(np.asarray(first, dtype=np.float64), np.asarray(later, dtype=np.float64))
