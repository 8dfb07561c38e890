"""Situated vectors: chunk vector plus weighted context vector, scoring as a sum of similarities."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.config import EmbeddingConfig
from retrieval.embedder import Embedder
from retrieval.situated import index_vectors, mean_context, window_bounds, window_texts


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_windows_hold_the_chunk_and_its_neighbours() -> None:
    lo, hi = window_bounds(5, 1)
    assert lo.tolist() == [0, 0, 1, 2, 3] and hi.tolist() == [2, 3, 4, 5, 5]
    lo, hi = window_bounds(3, None)
    assert lo.tolist() == [0, 0, 0] and hi.tolist() == [3, 3, 3]
    assert window_texts(["a", "b", "c"], 1) == ["ab", "abc", "bc"]


def test_mean_context_and_the_score_it_gives() -> None:
    rng = np.random.default_rng(0)
    chunks = _unit(rng.normal(size=(6, 8))).astype(np.float32)
    ctx = mean_context(chunks, 2)
    expected = _unit(chunks[1:6].mean(0))  # chunk 3's window: chunks 1..5
    np.testing.assert_allclose(ctx[3], expected, rtol=1e-5)
    cfg = EmbeddingConfig(situated=True, context_weight=0.7, context_radius=2)
    vecs = index_vectors(cfg, ["x"] * 6, chunks, lambda t: np.zeros((len(t), 8)))
    q = _unit(rng.normal(size=8))
    # one inner product = sim(q, chunk) + w * sim(q, context)
    np.testing.assert_allclose(vecs @ q, chunks @ q + 0.7 * (ctx @ q), atol=1e-6)


def test_chunk_only_and_text_mode(embedder: Embedder) -> None:
    texts = ["The Nile flows north.", "It ends in the Mediterranean.", "Paris has the Eiffel Tower."]
    chunks = embedder.embed(texts)
    plain = index_vectors(EmbeddingConfig(situated=False), texts, chunks, embedder.embed)
    assert plain is chunks
    cfg = EmbeddingConfig(situated=True, context_mode="text", context_radius=1, context_weight=0.5)
    vecs = index_vectors(cfg, texts, chunks, embedder.embed)
    window = embedder.embed(["The Nile flows north.It ends in the Mediterranean."])[0]
    np.testing.assert_allclose(vecs[0], chunks[0] + 0.5 * window, atol=1e-5)
    assert vecs.dtype == np.float32


def test_embedder_gives_unit_vectors(embedder: Embedder) -> None:
    v = embedder.embed(["hello", "a longer sentence about rivers"])
    assert v.shape == (2, embedder.dim) == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert embedder.name == "all-MiniLM-L6-v2"
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(FileNotFoundError):
        Embedder(embedder.model_dir / "missing")
