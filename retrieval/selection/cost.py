"""What a combination of chunks costs to prefill now, given which chunks have a warm KV cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.blend.options import BLEND_MODES, DEFAULT_RATIO, BlendMode
from engine.chunk_kv import SelectionCosts
from retrieval.selection.candidate import Candidate
from retrieval.selection.config import BudgetUnit


@dataclass(frozen=True)
class ChunkCosts:
    """Per-candidate costs in the budget's unit: at the first document position, and anywhere else.

    The two differ only in prefix mode. With a per-pair attention cost (`pair` > 0, budgets in ms) a
    chunk also pays for its prefilled rows attending to everything before them, and for the query
    attending to its tokens, so what it costs grows with the context it is appended to. Costs are
    non-negative and appending a chunk never changes what the chunks before it cost, so a
    combination over budget has no descendant within it.
    """

    first: np.ndarray
    later: np.ndarray
    # prefilled rows per candidate (at the first position, and anywhere else) and its length
    rows_first: np.ndarray | None = None
    rows_later: np.ndarray | None = None
    n_tokens: np.ndarray | None = None
    pair: float = 0.0  # cost of one query-key pair of attention, in the budget's unit
    prefix_tokens: int = 0  # rows before the first document (the system prefix)
    query_tokens: int = 0  # rows after the documents, which attend to all of them

    def of(self, seq: Sequence[int]) -> float:
        cost = 0.0
        for k, i in enumerate(seq):
            cost = self.extend(cost, seq[:k], i)
        return cost

    def extend(self, cost: float, seq: Sequence[int], index: int) -> float:
        """Cost of the combination `seq` (of cost `cost`) with candidate `index` appended."""
        linear = float(self.first[index] if not seq else self.later[index])
        if self.pair == 0.0 or self.n_tokens is None or self.rows_first is None or self.rows_later is None:
            return cost + linear
        n = float(self.n_tokens[index])
        rows = float(self.rows_first[index] if not seq else self.rows_later[index])
        context = self.prefix_tokens + float(sum(self.n_tokens[j] for j in seq))
        return cost + linear + self.pair * (rows * (context + n / 2) + self.query_tokens * n)


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

    The query and the system prefix cost the same whatever is chosen, so their own rows are not
    counted. With `tokens_per_s` (a measured prefill speed, see speed.py) costs convert to estimated
    milliseconds: the per-token work (matmuls) at that speed, plus, with `pair_s`, attention at
    `pair_s` seconds per query-key pair. Attention is what makes long contexts dearer than their
    token count says: every prefilled row of a chunk attends to `prefix_tokens` plus the chunks
    before it plus itself, and the `query_tokens` rows attend to every chunk (a 10-passage MuSiQue
    prompt took twice what the linear estimate said on a 2-core CPU).
    """

    mode: BlendMode = "cacheblend"
    ratio: float = DEFAULT_RATIO
    full_layer_share: float = 0.0
    tokens_per_s: float | None = None
    pair_s: float = 0.0
    prefix_tokens: int = 0
    query_tokens: int = 0

    def __post_init__(self) -> None:
        if self.mode not in BLEND_MODES:
            raise ValueError(f"mode: unknown blend mode {self.mode!r}; choose one of {BLEND_MODES}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"ratio must be within [0, 1], got {self.ratio}")
        if not 0.0 <= self.full_layer_share <= 1.0:
            raise ValueError(f"full_layer_share must be within [0, 1], got {self.full_layer_share}")
        if self.tokens_per_s is not None and not self.tokens_per_s > 0:
            raise ValueError(f"tokens_per_s must be > 0, got {self.tokens_per_s}")
        if not self.pair_s >= 0.0:
            raise ValueError(f"pair_s must be >= 0, got {self.pair_s}")
        if self.prefix_tokens < 0 or self.query_tokens < 0:
            raise ValueError("prefix_tokens and query_tokens must be >= 0")

    @classmethod
    def for_engine(cls, mode: BlendMode, ratio: float, costs: SelectionCosts) -> CostModel:
        """The cost model of a request in `mode` at `ratio`, with the engine's figures for its prompt
        (Engine.chunk_kv.selection_costs)."""
        return cls(
            mode,
            ratio,
            costs.full_layer_share,
            costs.tokens_per_s,
            costs.pair_s,
            costs.prefix_tokens,
            costs.query_tokens,
        )

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
        rows_first = np.asarray([self.tokens(c, True) for c in candidates], dtype=np.float64)
        rows_later = np.asarray([self.tokens(c, False) for c in candidates], dtype=np.float64)
        first = np.asarray([self.to_unit(r, unit) for r in rows_first], dtype=np.float64)
        later = np.asarray([self.to_unit(r, unit) for r in rows_later], dtype=np.float64)
        if unit == "tokens" or self.pair_s == 0.0:
            return ChunkCosts(first, later)
        return ChunkCosts(
            first,
            later,
            rows_first,
            rows_later,
            np.asarray([c.n_tokens for c in candidates], dtype=np.float64),
            pair=1000.0 * self.pair_s,
            prefix_tokens=self.prefix_tokens,
            query_tokens=self.query_tokens,
        )
