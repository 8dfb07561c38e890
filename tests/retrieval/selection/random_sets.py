"""Candidate sets for the search tests: random unit vectors stand in for chunk embeddings."""

from __future__ import annotations

import numpy as np

from retrieval.selection.candidate import Candidate

DIM = 384  # all-MiniLM-L6-v2


def random_candidates(rng: np.random.Generator, n: int, warm_share: float = 0.0) -> list[Candidate]:
    """`n` candidates with random unit vectors, 20-400 tokens, a `warm_share` of them warm."""
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        Candidate(f"c{i}", f"chunk {i}", int(rng.integers(20, 400)), bool(rng.random() < warm_share),
                  vector=vectors[i])
        for i in range(n)
    ]  # fmt: skip
