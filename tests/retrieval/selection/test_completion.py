"""Greedy completion of CORAG's pick: it only ever raises the utility, keeps to the budget, and lets
a search too short to reach deep nodes still spend a cheap (warm) budget."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.embedder import Embedder
from retrieval.selection import CostModel, SelectionConfig, select_chunks
from retrieval.selection.embedding_scorer import EmbeddingScorer
from tests.retrieval.selection.random_sets import random_candidates

QUERY = "Which river flows through the capital?"


@pytest.fixture(scope="module")
def scorer(embedder: Embedder) -> EmbeddingScorer:
    return EmbeddingScorer(embedder, distraction=0.0)


def test_completion_raises_utility_and_keeps_the_budget(scorer: EmbeddingScorer) -> None:
    rng = np.random.default_rng(3)
    longer = 0
    for case in range(40):
        cands = random_candidates(rng, int(rng.integers(2, 12)), warm_share=float(rng.random()))
        model = CostModel(mode="cachecraft", ratio=0.15)
        budget = float(rng.uniform(50, 2000))
        base = SelectionConfig(budget=budget, iterations=3, seed=case, complete=False)
        plain = select_chunks(QUERY, cands, scorer, model, base)
        done = select_chunks(QUERY, cands, scorer, model, base.model_copy(update={"complete": True}))
        assert done.cost <= budget + 1e-6
        assert done.indices[: len(plain.indices)] == plain.indices  # it extends, never reorders
        assert done.reward >= plain.reward - 1e-12
        longer += len(done.indices) > len(plain.indices)
    assert longer >= 10  # three iterations rarely reach the depth a loose budget allows


def test_a_warm_budget_is_spent_without_more_iterations(scorer: EmbeddingScorer) -> None:
    rng = np.random.default_rng(11)
    cands = random_candidates(rng, 10, warm_share=1.0)
    model = CostModel(mode="cachecraft", ratio=0.15)
    cfg = SelectionConfig(budget=float(sum(c.n_tokens for c in cands)), iterations=8)
    shallow = select_chunks(QUERY, cands, scorer, model, cfg.model_copy(update={"complete": False}))
    full = select_chunks(QUERY, cands, scorer, model, cfg)
    assert len(shallow.indices) <= 3 < len(full.indices)
    assert full.reward > shallow.reward
