"""The entry point: choose which retrieved chunks go into the prompt, and in what order."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from retrieval.selection.candidate import Candidate, Selection
from retrieval.selection.completion import complete_greedily
from retrieval.selection.config import SelectionConfig
from retrieval.selection.cost import CostModel
from retrieval.selection.mcts import BUDGET_SLACK, SearchParams, TreeSearch
from retrieval.selection.scorer import Combination, UtilityScorer
from retrieval.selection.topk import greedy_topk


def select_chunks(
    query: str,
    candidates: Sequence[Candidate],
    scorer: UtilityScorer,
    cost_model: CostModel,
    config: SelectionConfig,
) -> Selection:
    """The chosen chunks for `query`: blocking and CPU-bound, so an async route runs it in a thread.

    The time cap bounds the tree search; the scorer's preparation (embedding the query, and the
    candidates that carry no vector) comes before it and is reported apart as `prepare_ms`; both
    are in `search_ms`. The result never costs more than the budget; it is empty when no single
    chunk fits.
    Deterministic for a given seed as long as the iteration count, not the time cap, ends the search.
    """
    started = time.perf_counter()
    budget = float(config.budget)
    costs = cost_model.costs(candidates, config.budget_unit)
    n = len(candidates)
    prepared = scorer.prepare(query, candidates) if n else None
    seq: Combination = ()
    iterations = scored = 0
    stopped_by = ""
    method = config.method
    prepare_ms = (time.perf_counter() - started) * 1000.0
    if prepared is not None and method == "corag":
        params = SearchParams(
            budget, config.iterations, config.c, config.lambda_, config.seed, config.time_cap_ms
        )
        result = TreeSearch(prepared, costs, n, params).run()
        iterations, scored, stopped_by = result.iterations, result.scored, result.stopped_by
        if result.best is not None:
            seq = result.best.seq
        if config.complete:
            seq, extra = complete_greedily(prepared, costs, n, seq, budget)
            scored += extra
    if prepared is not None and method == "topk":
        seq, scored = greedy_topk(prepared, costs, n, budget)
    reward = prepared.score([seq])[0] if prepared is not None and seq else 0.0
    cost = costs.of(seq)
    if not cost <= budget + BUDGET_SLACK or not math.isfinite(cost):
        raise AssertionError(f"selection cost {cost} exceeds the budget {budget}")  # a bug, never input
    return Selection(
        method=method,
        chunks=tuple(candidates[i] for i in seq),
        indices=seq,
        reward=float(reward),
        cost=cost,
        budget=budget,
        search_ms=(time.perf_counter() - started) * 1000.0,
        iterations=iterations,
        scored=scored,
        prepare_ms=prepare_ms,
        stopped_by=stopped_by,
    )
