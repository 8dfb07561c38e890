"""Fixtures for the retrieval tests: the engine's model wrapped for chunking, the real embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.torch_engine import TorchEngine
from retrieval.collections import CollectionManager
from retrieval.config import ChunkerConfig, CollectionConfig, EmbeddingConfig
from retrieval.embedder import Embedder
from retrieval.lm import ChunkingLM

FIXED = CollectionConfig(chunker=ChunkerConfig(method="fixed", size=24, overlap=4))
PPL = CollectionConfig(
    chunker=ChunkerConfig(method="ppl", merge_target=40, max_tokens=64),
    embedding=EmbeddingConfig(situated=True, context_radius=1, context_weight=0.5),
)

NILE = (
    "The Nile is a major north-flowing river in northeastern Africa. It flows into the Mediterranean Sea. "
    "The Nile is the longest river in Africa.\n\n"
    "Photosynthesis is the process plants use to turn light into chemical energy. Chlorophyll absorbs "
    "mostly blue and red light. Oxygen is released as a by-product.\n\n"
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was completed in 1889 for the "
    "World's Fair. Gustave Eiffel's company designed and built it."
)


@pytest.fixture(scope="session")
def lm(engine: TorchEngine) -> ChunkingLM:
    return ChunkingLM(engine)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture()
def manager(tmp_path: Path, engine: TorchEngine, embedder: Embedder) -> Iterator[CollectionManager]:
    m = CollectionManager(tmp_path / "collections", lambda: engine, embedder_factory=lambda: embedder)
    yield m
    m.close()
