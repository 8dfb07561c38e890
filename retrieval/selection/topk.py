"""The baseline: rank candidates by their own utility, then fill the budget greedily in that order."""

from __future__ import annotations

from retrieval.selection.cost import ChunkCosts
from retrieval.selection.mcts import BUDGET_SLACK
from retrieval.selection.scorer import Combination, PreparedScorer


def greedy_topk(scorer: PreparedScorer, costs: ChunkCosts, n: int, budget: float) -> tuple[Combination, int]:
    """The combination top-k builds, and how many combinations it scored.

    Every candidate is scored alone in one call; in that order (ties: retrieval order), each one is
    appended when it still fits, otherwise skipped for the next (as CORAG's NaiveRAG baseline does).
    """
    if n == 0:
        return (), 0
    alone = scorer.score([(i,) for i in range(n)])
    order = sorted(range(n), key=lambda i: (-alone[i], i))
    chosen: list[int] = []
    cost = 0.0
    for i in order:
        extended = costs.extend(cost, chosen, i)
        if extended <= budget + BUDGET_SLACK:
            chosen.append(i)
            cost = extended
    return tuple(chosen), n
