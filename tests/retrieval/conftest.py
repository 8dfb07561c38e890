"""Fixtures for the retrieval tests: the engine's model wrapped for chunking, the real embedder, and
the collection store, once embedded (SQLite + FAISS) and once shared (Postgres + pgvector)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.torch_engine import TorchEngine
from retrieval.collection_store import CollectionStore
from retrieval.collections import CollectionManager
from retrieval.config import ChunkerConfig, CollectionConfig, EmbeddingConfig
from retrieval.embedder import Embedder
from retrieval.jobs import JobView
from retrieval.lm import ChunkingLM
from retrieval.pg_store import PostgresCollectionStore
from retrieval.sqlite_store import SqliteCollectionStore
from tests.postgres_server import PostgresServer

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


StoreFactory = Callable[[], CollectionStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Opens the test's store (each call a new handle on the same data, as a restart would)."""
    if request.param == "sqlite":
        return lambda: SqliteCollectionStore(tmp_path / "collections")
    postgres: PostgresServer = request.getfixturevalue("postgres")
    url = postgres.fresh_database()
    return lambda: PostgresCollectionStore(url)


@pytest.fixture()
def manager(open_store: StoreFactory, engine: TorchEngine, embedder: Embedder) -> Iterator[CollectionManager]:
    m = CollectionManager(open_store(), lambda: engine, embedder_factory=lambda: embedder, job_poll_s=0.2)
    yield m
    m.close()


def wait_for_job(manager: CollectionManager, job_id: str, timeout: float) -> JobView:
    """The job's view once it has succeeded or failed; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = manager.job(job_id)
        if job.state in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {manager.job(job_id)}")
