"""The collection manager end to end in one process, on each store: jobs, retrieval, the KV hook,
failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import pytest

from engine.torch_engine import TorchEngine
from retrieval.collections import CollectionManager
from retrieval.config import EmbeddingConfig
from retrieval.documents import NewDocument
from retrieval.embedder import Embedder
from retrieval.errors import (
    CollectionExists,
    CollectionNotFound,
    InvalidDocument,
    InvalidRequest,
    JobNotFound,
)
from retrieval.records import StoredChunk
from tests.retrieval.conftest import FIXED, NILE, PPL, StoreFactory, wait_for_job

wait = partial(wait_for_job, timeout=120)


def test_collections_lifecycle(manager: CollectionManager) -> None:
    info = manager.create("docs", FIXED)
    assert (info.name, info.documents, info.embedder, info.dim) == ("docs", 0, "all-MiniLM-L6-v2", 384)
    with pytest.raises(CollectionExists):
        manager.create("docs", FIXED)
    with pytest.raises(InvalidRequest, match="invalid collection name"):
        manager.create("../etc", FIXED)
    with pytest.raises(CollectionNotFound):
        manager.info("nope")
    with pytest.raises(CollectionNotFound):
        manager.retrieve("nope", "q", 3)
    with pytest.raises(JobNotFound):
        manager.job("nope")
    assert [c.name for c in manager.list_collections()] == ["docs"]
    manager.delete("docs")
    assert manager.list_collections() == [] and manager.store.names() == []
    with pytest.raises(CollectionNotFound):
        manager.delete("docs")


def test_ingest_retrieve_hook_and_delete(manager: CollectionManager) -> None:
    seen: list[tuple[str, list[StoredChunk]]] = []
    manager.on_chunks_ingested = lambda name, chunks: seen.append((name, list(chunks)))
    manager.create("kb", PPL)
    job = manager.submit_documents("kb", [("nile.txt", NILE), ("", "Tea is a drink made from leaves.")])
    assert job.state == "queued" and [d.name for d in job.documents] == ["nile.txt", "doc-1"]
    done = wait(manager, job.job_id)
    assert done.state == "succeeded" and done.progress == 1.0 and done.error is None
    assert all(d.state == "ingested" and d.chunks > 0 for d in done.documents)
    nile_id = done.documents[0].doc_id

    hits = manager.retrieve("kb", "Which river flows into the Mediterranean?", 3)
    assert hits[0].doc_id == nile_id and "Mediterranean" in hits[0].text
    assert NILE[hits[0].start : hits[0].end] == hits[0].text and hits[0].doc_name == "nile.txt"
    assert hits[0].token_ids and hits[0].score >= hits[-1].score
    # the hook saw every chunk of each committed document, in order, with token ids
    assert [name for name, _ in seen] == ["kb", "kb"]
    assert "".join(c.text for c in seen[0][1]) == NILE and all(c.token_ids for c in seen[0][1])

    info, text, chunks = manager.document("kb", nile_id)
    assert text == NILE and info.n_chunks == len(chunks) == len(seen[0][1])
    assert manager.delete_document("kb", nile_id) == len(chunks)
    assert all(h.doc_id != nile_id for h in manager.retrieve("kb", "Mediterranean river", 10))


def test_failures_are_reported_and_leave_the_collection_consistent(
    manager: CollectionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.create("kb", FIXED)
    with pytest.raises(InvalidDocument, match="empty"):
        manager.submit_documents("kb", [("a", "ok text"), ("blank", "   ")])
    with pytest.raises(InvalidRequest, match="no documents"):
        manager.submit_documents("kb", [])
    from retrieval import ingest

    real = ingest.index_vectors

    def flaky(
        cfg: EmbeddingConfig,
        texts: Sequence[str],
        vectors: np.ndarray,
        embed: Callable[[Sequence[str]], np.ndarray],
    ) -> np.ndarray:
        if "EXPLODE" in "".join(texts):
            raise RuntimeError("the embedder fell over")
        return real(cfg, texts, vectors, embed)

    monkeypatch.setattr(ingest, "index_vectors", flaky)
    job = manager.submit_documents("kb", [("good", NILE), ("bad", "EXPLODE here."), ("good2", "More text.")])
    done = wait(manager, job.job_id)
    assert done.state == "failed" and "1 of 3 documents failed" in (done.error or "")
    assert [d.state for d in done.documents] == ["ingested", "failed", "ingested"]
    assert "the embedder fell over" in (done.documents[1].error or "")
    assert [d.name for d in manager.documents("kb")] == ["good", "good2"]

    def broken_hook(name: str, chunks: Sequence[StoredChunk]) -> None:
        raise OSError("KV store offline")

    manager.on_chunks_ingested = broken_hook
    done = wait(manager, manager.submit_documents("kb", [("x", "Hooks may fail.")]).job_id)
    assert done.state == "succeeded" and "KV store offline" in done.warnings[0]


def test_unreadable_files_fail_alone_and_pages_reach_the_hits(manager: CollectionManager) -> None:
    manager.create("kb", FIXED)
    # NILE's three paragraphs as the three pages of a PDF
    starts = (0, NILE.index("Photosynthesis"), NILE.index("The Eiffel"))
    docs = [
        NewDocument("atlas.pdf", NILE, page_starts=starts),
        NewDocument("locked.pdf", error="file 'locked.pdf' is an encrypted PDF (it needs a password)"),
        NewDocument("notes.txt", "Tea is a drink made from the leaves of a shrub."),
    ]
    job = manager.submit_documents("kb", docs)
    assert [d.state for d in job.documents] == ["pending", "failed", "pending"]
    done = wait(manager, job.job_id)
    assert [d.state for d in done.documents] == ["ingested", "failed", "ingested"], done
    assert done.state == "failed" and "1 of 3 documents failed" in (done.error or "")
    assert "encrypted" in (done.documents[1].error or "")
    assert sorted(d.name for d in manager.documents("kb")) == ["atlas.pdf", "notes.txt"]

    def page(offset: int) -> int:
        return sum(1 for s in starts if s <= offset)

    hits = manager.retrieve("kb", "When was the Eiffel Tower completed?", 20)
    assert hits[0].doc_name == "atlas.pdf" and "Eiffel" in hits[0].text and hits[0].pages
    assert hits[0].pages[1] == 3  # the tower's paragraph is page 3
    for h in hits:
        if h.doc_name == "atlas.pdf":
            assert h.pages == (page(h.start), page(h.end - 1)) and NILE[h.start : h.end] == h.text
        else:
            assert h.pages is None
    assert {h.pages for h in hits} >= {(1, 1), (2, 2), (3, 3), None}


def test_job_waits_for_the_model_and_fails_when_it_never_comes(
    open_store: StoreFactory, engine: TorchEngine, embedder: Embedder
) -> None:
    ready = threading.Event()
    m = CollectionManager(
        open_store(),
        lambda: engine if ready.is_set() else None,
        lm_wait_s=60,
        embedder_factory=lambda: embedder,
    )
    m.create("kb", FIXED)
    job = m.submit_documents("kb", [("a", NILE)])
    time.sleep(0.5)
    assert m.job(job.job_id).stage == "waiting"
    ready.set()
    assert wait(m, job.job_id).state == "succeeded"
    m.close()

    m = CollectionManager(open_store(), lambda: None, lm_wait_s=0.3, embedder_factory=lambda: embedder)
    done = wait(m, m.submit_documents("kb", [("b", NILE)]).job_id)
    assert done.state == "failed" and "did not load" in (done.error or "")
    assert done.documents[0].state == "failed" and len(m.documents("kb")) == 1
    m.close()


def test_deleting_a_collection_fails_its_queued_job(manager: CollectionManager) -> None:
    manager.create("a", PPL)
    manager.create("b", FIXED)
    slow = manager.submit_documents("a", [("n", NILE * 3)])
    queued = manager.submit_documents("b", [("n", NILE)])
    manager.delete("b")
    assert wait(manager, slow.job_id).state == "succeeded"
    done = wait(manager, queued.job_id)
    assert done.state == "failed" and "deleted" in (done.error or "")
    manager.create("b", FIXED)  # the name is free again, and the new collection is empty
    assert manager.info("b").documents == 0
