"""Warm caches make chunks cheaper, so the same budget admits more context."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.embedder import Embedder
from retrieval.selection import Candidate, CostModel, SelectionConfig, select_chunks
from retrieval.selection.embedding_scorer import EmbeddingScorer

QUERY = "What do we know about the history of Paris?"
TEXTS = [
    "Paris was founded in the 3rd century BC by a Celtic people called the Parisii.",
    "The Romans conquered the Paris Basin in 52 BC and built a city named Lutetia.",
    "In the 12th century Paris became the largest city of the western world.",
    "The French Revolution began in Paris with the storming of the Bastille in 1789.",
    "Baron Haussmann rebuilt much of Paris with wide boulevards in the 19th century.",
    "Bananas are rich in potassium.",
]


@pytest.mark.parametrize("method", ["corag", "topk"])
def test_warm_cache_admits_combinations_that_cold_cannot_afford(embedder: Embedder, method: str) -> None:
    scorer = EmbeddingScorer(embedder)
    cold = [Candidate(f"c{i}", t, 150) for i, t in enumerate(TEXTS)]
    warm = [Candidate(c.id, c.text, c.n_tokens, warm=True) for c in cold]
    model = CostModel(mode="cacheblend", ratio=0.15)
    cfg = SelectionConfig(method=method, budget=320, iterations=200)
    before = select_chunks(QUERY, cold, scorer, model, cfg)
    after = select_chunks(QUERY, warm, scorer, model, cfg)
    assert len(before.chunks) == 2  # 150 tokens each, cold: two fit in 320
    assert len(after.chunks) > 2 and after.cost <= 320
    assert after.tokens > cfg.budget  # more prompt tokens than the budget: only warm chunks allow it
    assert model.costs(cold).of(after.indices) > cfg.budget  # unaffordable cold
    if method == "corag":
        # every cold-affordable pick is still affordable warm, so the search can only do better
        assert after.reward > before.reward
    else:
        # top-k fills in the same ranking order, so the cold pick leads the warm one; it does not
        # weigh the utility, which the distraction penalty lowers for the low-relevance chunks added
        assert after.indices[: len(before.indices)] == before.indices


def test_search_prefers_the_warm_one_of_equals(embedder: Embedder) -> None:
    """Two equally useful chunks, one warm: under a tight budget only the warm one leaves room."""
    scorer = EmbeddingScorer(embedder)
    cands = [Candidate(f"c{i}", t, 150, warm=i == 1) for i, t in enumerate(TEXTS[:3])]
    # budget for one cold chunk plus the warm one, not two cold ones
    cfg = SelectionConfig(budget=150 + 0.15 * 150 + 1, iterations=200)
    sel = select_chunks(QUERY, cands, scorer, CostModel(mode="cacheblend", ratio=0.15), cfg)
    assert 1 in sel.indices and len(sel.indices) == 2
    assert np.isclose(sel.cost, 150 + 22.5)
