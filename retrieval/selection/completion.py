"""Greedy completion of the tree search's pick: append chunks while the utility still rises.

With a cheap budget (warm chunk caches cost only their recompute share) a dozen candidates fit,
but the tree grows about one level per `branching` iterations: with UCB's exploration spreading the
visits, 64 iterations over 10 candidates rarely get below depth three, so the pick stopped at
three chunks whatever the budget allowed. Completing it the way a rollout policy would (the best
next chunk by the same utility, as long as it fits and adds to the utility) lets the search spend
what it can afford without adding iterations, and never lowers the pick's utility or exceeds the
budget. A pick that the utility would not extend (redundant or irrelevant candidates) stays as is.
"""

from __future__ import annotations

from retrieval.selection.cost import ChunkCosts
from retrieval.selection.mcts import BUDGET_SLACK
from retrieval.selection.scorer import Combination, PreparedScorer

# a gain smaller than this is rounding, not a reason for more context
MIN_GAIN = 1e-9


def complete_greedily(
    scorer: PreparedScorer, costs: ChunkCosts, n: int, seq: Combination, budget: float
) -> tuple[Combination, int]:
    """`seq` extended greedily within `budget`; also how many combinations were scored."""
    scored = 0
    current = scorer.score([seq])[0] if seq else 0.0
    cost = costs.of(seq)
    while True:
        used = set(seq)
        options = [
            (i, extended)
            for i in range(n)
            if i not in used and (extended := costs.extend(cost, seq, i)) <= budget + BUDGET_SLACK
        ]
        if not options:
            return seq, scored
        rewards = scorer.score([(*seq, i) for i, _ in options])
        scored += len(options)
        best = max(range(len(options)), key=lambda k: (rewards[k], -options[k][0]))
        if rewards[best] <= current + MIN_GAIN:
            return seq, scored
        seq, cost, current = (*seq, options[best][0]), options[best][1], rewards[best]
