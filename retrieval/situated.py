"""Situated chunk vectors: a chunk's own embedding plus a weighted embedding of its context window.

Off-the-shelf embedders get worse when a chunk's neighbours are simply pasted into its text (the
SitEmb paper measures large drops), so the chunk keeps its own vector and the context is added as a
separate term: v = c + w * ctx, with c and ctx unit vectors. v is not re-normalised, so a query's
inner product with v is sim(q, chunk) + w * sim(q, context): fusion of two scores in one index.
The window holds the chunk and `radius` neighbours on each side (the whole document if None),
like SitEmb's windows that contain the chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from retrieval.config import EmbeddingConfig


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def window_bounds(n: int, radius: int | None) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) chunk indices of each chunk's context window."""
    idx = np.arange(n)
    if radius is None:
        return np.zeros(n, dtype=np.int64), np.full(n, n, dtype=np.int64)
    return np.maximum(idx - radius, 0), np.minimum(idx + radius + 1, n)


def mean_context(chunk_vectors: np.ndarray, radius: int | None) -> np.ndarray:
    """Unit mean of the chunk vectors in each window (prefix sums: no loop over chunks)."""
    n = len(chunk_vectors)
    if n == 0:
        return chunk_vectors
    lo, hi = window_bounds(n, radius)
    sums = np.concatenate([np.zeros((1, chunk_vectors.shape[1])), np.cumsum(chunk_vectors, axis=0)])
    return _unit(sums[hi] - sums[lo])


def window_texts(texts: Sequence[str], radius: int | None) -> list[str]:
    lo, hi = window_bounds(len(texts), radius)
    return ["".join(texts[a:b]) for a, b in zip(lo, hi, strict=True)]


def situate(chunk_vectors: np.ndarray, context_vectors: np.ndarray, weight: float) -> np.ndarray:
    return np.ascontiguousarray(chunk_vectors + weight * context_vectors, dtype=np.float32)


def index_vectors(
    cfg: EmbeddingConfig,
    texts: Sequence[str],
    chunk_vectors: np.ndarray,
    embed: Callable[[Sequence[str]], np.ndarray],
) -> np.ndarray:
    """The vectors to index for one document's chunks (in document order)."""
    if not cfg.situated or cfg.context_weight == 0 or len(texts) == 0:
        return chunk_vectors
    if cfg.context_mode == "mean":
        context = mean_context(chunk_vectors, cfg.context_radius)
    else:
        context = _unit(embed(window_texts(texts, cfg.context_radius)))
    return situate(chunk_vectors, context, cfg.context_weight)
