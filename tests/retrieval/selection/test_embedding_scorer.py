"""The default scorer: one similarity matrix per query, and its redundancy penalty at work."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from retrieval.embedder import Embedder
from retrieval.selection import Candidate, CostModel, SelectionConfig, select_chunks
from retrieval.selection.embedding_scorer import EmbeddingScorer

QUERY = "Who designed and built the Eiffel Tower, and when was it finished?"
DUPLICATE_A = "The Eiffel Tower in Paris was designed and built by the company of engineer Gustave Eiffel."
DUPLICATE_B = "The Eiffel Tower in Paris was designed and built by the company of the engineer G. Eiffel."
DISTINCT = "Construction of the tower was finished in March 1889, in time for the World's Fair."
OTHERS = [
    "Photosynthesis turns light into chemical energy in the leaves of plants.",
    "The Nile is a major north-flowing river in northeastern Africa.",
    "Mount Everest is the highest mountain above sea level.",
]


class CountingEmbedder(Embedder):
    """The real embedder, counting how many texts it was asked to embed."""

    calls: list[int]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return super().embed(texts)


@pytest.fixture(scope="module")
def counting() -> CountingEmbedder:
    e = CountingEmbedder()
    e.calls = []
    return e


def candidates() -> list[Candidate]:
    texts = [DUPLICATE_A, DUPLICATE_B, DISTINCT, *OTHERS]
    return [Candidate(f"c{i}", t, 150) for i, t in enumerate(texts)]


def test_redundant_duplicate_is_not_picked_twice(embedder: Embedder) -> None:
    scorer = EmbeddingScorer(embedder)
    cands = candidates()
    prepared = scorer.prepare(QUERY, cands)
    # the premise: both near-duplicates outrank the distinct chunk on their own, so top-k takes both
    assert prepared.sim[0, 1] > 0.9 and prepared.sim[0, 2] < 0.9
    top = select_chunks(QUERY, cands, scorer, CostModel(), SelectionConfig(method="topk", budget=300))
    assert set(top.indices) == {0, 1}
    corag = select_chunks(QUERY, cands, scorer, CostModel(), SelectionConfig(budget=300))
    assert set(corag.indices) in ({0, 2}, {1, 2})
    assert corag.reward > top.reward


def test_one_embedding_pass_per_query_whatever_the_search(counting: CountingEmbedder) -> None:
    scorer = EmbeddingScorer(counting)
    cands = candidates()
    counting.calls.clear()
    sel = select_chunks(QUERY, cands, scorer, CostModel(), SelectionConfig(budget=600, iterations=200))
    assert sel.scored > len(cands)  # many combinations scored...
    assert counting.calls == [1, len(cands)]  # ...from one query and one candidate embedding call
    vectors = counting.embed([c.text for c in cands])
    counting.calls.clear()
    given = [Candidate(c.id, c.text, c.n_tokens, vector=v) for c, v in zip(cands, vectors, strict=True)]
    again = select_chunks(QUERY, given, scorer, CostModel(), SelectionConfig(budget=600, iterations=200))
    assert counting.calls == [1]  # candidates that carry their vector are not embedded again
    assert again.indices == sel.indices


def test_scores_are_ordered_bounded_and_consistent(embedder: Embedder) -> None:
    prepared = EmbeddingScorer(embedder).prepare(QUERY, candidates())
    least = int(np.argmin(prepared.z))
    combos = [(0, 2), (2, 0), (0, 2, least), (4,)]
    batch = prepared.score(combos)
    assert batch[0] != batch[1]  # order matters (the lead position weighs more)
    assert batch[2] < batch[0]  # an irrelevant chunk lowers the utility: more is not always better
    assert all(-1.0 <= s <= 1.0 for s in batch)
    assert [prepared.score([c])[0] for c in combos] == pytest.approx(batch)
    with pytest.raises(ValueError, match="empty"):
        prepared.score([()])


def test_bad_scorer_settings_are_rejected(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="overlap"):
        EmbeddingScorer(embedder, overlap=1.0)
