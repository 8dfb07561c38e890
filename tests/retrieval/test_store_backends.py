"""The collection-store rules (retrieval/collection_store.py), checked on both stores: SQLite + FAISS
and Postgres + pgvector. Tests that only one store can have (a second process, replicas) are at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import psycopg
import pytest

from engine.torch_engine import TorchEngine
from retrieval.collection_store import CollectionStore
from retrieval.collections import CollectionManager
from retrieval.config import CollectionConfig, IndexConfig
from retrieval.embedder import Embedder
from retrieval.errors import (
    CollectionClosed,
    CollectionExists,
    CollectionNotFound,
    DocumentExists,
    DocumentNotFound,
    StoreInUse,
)
from retrieval.jobs import DocumentTask, Job, JobView
from retrieval.pg_store import PostgresCollectionStore
from retrieval.sqlite_store import SqliteCollectionStore
from retrieval.store import NewChunk
from tests.postgres_server import PostgresServer
from tests.retrieval.conftest import FIXED, NILE, StoreFactory
from tests.retrieval.test_collection_store import DIM, make_doc

EMBEDDER = "all-MiniLM-L6-v2"


@pytest.fixture()
def store(open_store: StoreFactory) -> Iterator[CollectionStore]:
    s = open_store()
    yield s
    s.close()


def top(store: CollectionStore, name: str, vector: np.ndarray, k: int = 3) -> list[tuple[str, int]]:
    return [(c.doc_id, c.seq) for c, _, _ in store.open(name).search(vector, k)]


def queued(collection: str, texts: dict[str, str]) -> tuple[JobView, dict[str, str]]:
    tasks = [DocumentTask(doc_id, f"{doc_id}.txt") for doc_id in texts]
    return Job(collection=collection, documents=tasks, texts=dict(texts)).view(), texts


def test_collections_documents_and_search_survive_reopening(open_store: StoreFactory) -> None:
    store = open_store()
    col = store.create("kb", CollectionConfig(index=IndexConfig(kind="hnsw")), EMBEDDER, DIM)
    with pytest.raises(CollectionExists):
        store.create("kb", FIXED, EMBEDDER, DIM)
    other = store.create("other.0123456789abcdef", FIXED, EMBEDDER, DIM)
    a, b = make_doc("alpha " * 30, 3, 1), make_doc("beta " * 40, 4, 2)
    stored_a = col.add("a", "A", a)
    col.add("b", "B", b)
    other.add("a", "A elsewhere", make_doc("alpha " * 30, 3, 1))  # same ids, another collection
    assert [c.text for c in stored_a] == [c.text for c in a.chunks] and stored_a[1].token_ids == [1, 2]
    with pytest.raises(DocumentExists):
        col.add("a", "again", a)
    assert col.chunk_count("a") == 3 and col.chunk_count("nope") is None
    hits = col.search(b.chunks[2].index_vector, 3)
    assert (hits[0][0].doc_id, hits[0][0].seq, hits[0][1]) == ("b", 2, "B")
    assert hits[0][2] == pytest.approx(1.0, abs=1e-4) and hits[0][2] >= hits[1][2] >= hits[2][2]
    before = top(store, "kb", a.chunks[0].index_vector, 7)
    col.flush()
    store.close()

    store = open_store()
    assert store.names() == ["kb", "other.0123456789abcdef"]
    col = store.open("kb")
    assert top(store, "kb", a.chunks[0].index_vector, 7) == before
    assert (col.info().documents, col.info().chunks) == (2, 7)
    assert col.delete_document("a") == 3
    with pytest.raises(DocumentNotFound):
        col.delete_document("a")
    assert all(doc == "b" for doc, _ in top(store, "kb", a.chunks[0].index_vector, 7))
    col.add("c", "C", make_doc("gamma " * 10, 1, 3))
    assert min(c.chunk_id for c in col.document("c")[2]) > max(c.chunk_id for c in stored_a)  # never reused
    assert [d.doc_id for d in col.documents()] == ["b", "c"]
    info, text, chunks = col.document("b")
    assert text == "beta " * 40 and "".join(c.text for c in chunks) == text and info.n_chunks == 4
    elsewhere = store.open("other.0123456789abcdef").search(a.chunks[0].index_vector, 9)
    assert [c.doc_id for c, _, _ in elsewhere] == ["a", "a", "a"]

    store.delete("kb")
    with pytest.raises(CollectionNotFound):
        store.open("kb")
    with pytest.raises(CollectionNotFound):
        store.delete("kb")
    with pytest.raises(CollectionClosed):
        col.add("d", "D", make_doc("delta " * 10, 1, 4))
    assert store.create("kb", FIXED, EMBEDDER, DIM).info().documents == 0  # the name is free, and empty
    store.close()


def test_page_starts_are_kept_per_document(open_store: StoreFactory) -> None:
    store = open_store()
    col = store.create("kb", FIXED, EMBEDDER, DIM)
    paged = replace(make_doc("alpha " * 30, 3, 1), page_starts=(0, 60, 60, 120))
    col.add("paged", "atlas.pdf", paged)
    col.add("plain", "notes.txt", make_doc("beta " * 20, 2, 2))
    store.close()

    store = open_store()  # a restart: what was stored is read back
    try:
        col = store.open("kb")
        assert col.page_starts(["paged", "plain", "unknown"]) == {"paged": (0, 60, 60, 120)}
        assert col.page_starts([]) == {}
        assert {d.name: d.pages for d in col.documents()} == {"atlas.pdf": 4, "notes.txt": None}
        assert col.document("paged")[0].pages == 4 and col.document("plain")[0].pages is None
    finally:
        store.close()


def test_failure_inside_a_document_leaves_no_trace(store: CollectionStore) -> None:
    col = store.create("kb", FIXED, EMBEDDER, DIM)
    a = make_doc("alpha " * 30, 3, 1)
    col.add("a", "A", a)
    before = (col.info().chunks, top(store, "kb", a.chunks[1].index_vector))

    def chunks_then_failure() -> Iterator[NewChunk]:
        yield from make_doc("beta " * 40, 4, 2).chunks[:2]
        raise RuntimeError("embedding died half-way")

    broken = make_doc("beta " * 40, 4, 2)
    broken.chunks = chunks_then_failure()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="half-way"):
        col.add("b", "B", broken)
    assert (col.info().chunks, top(store, "kb", a.chunks[1].index_vector)) == before
    assert [d.doc_id for d in col.documents()] == ["a"] and col.chunk_count("b") is None


def test_jobs_are_stored_claimed_once_and_taken_over_when_the_lease_runs_out(store: CollectionStore) -> None:
    store.create("kb", FIXED, EMBEDDER, DIM)
    first, texts = queued("kb", {"d1": "one", "d2": "two"})
    store.add_job(first, texts)
    second, _ = queued("kb", {"d3": "three"})
    store.add_job(second, {"d3": "three"})
    assert store.job(first.job_id) == first and store.job("nope") is None

    claimed = store.claim_job("w1", lease_s=0.6)
    assert claimed is not None and claimed[0].job_id == first.job_id
    assert claimed[1] == texts and claimed[2] == 1 and claimed[0].state == "running"
    job = Job.from_view(claimed[0], claimed[1])
    job.set_document(0, state="ingested", chunks=2)
    assert store.save_job(job.view(), "w1", lease_s=0.6)
    assert store.job(first.job_id).documents[0].state == "ingested"  # type: ignore[union-attr]

    other = store.claim_job("w2", lease_s=30)
    assert other is not None and other[0].job_id == second.job_id  # the running one is not handed out
    assert store.claim_job("w2", lease_s=30) is None
    time.sleep(1.0)  # w1 "died": its lease runs out
    taken = store.claim_job("w3", lease_s=30)
    assert taken is not None and taken[0].job_id == first.job_id and taken[2] == 2
    assert taken[0].documents[0].state == "ingested" and taken[1] == texts  # resumes where w1 was
    assert not store.save_job(job.view(), "w1", lease_s=30)  # w1 woke up: not its job any more
    assert not store.finish_job(job.view(), "w1", history=10)

    done = Job.from_view(taken[0], taken[1])
    done.set_document(1, state="ingested", chunks=1)
    done.conclude()
    assert store.finish_job(done.view(), "w3", history=10)
    got = store.job(first.job_id)
    assert got is not None and got.state == "succeeded" and got.finished_at is not None

    store.release_job(second.job_id, "w2")  # w2 stops: the job is at once claimable again
    assert not store.save_job(second, "w2", lease_s=30)
    again = store.claim_job("w4", lease_s=30)
    assert again is not None and again[0].job_id == second.job_id and again[1] == {"d3": "three"}
    assert again[2] == 1  # a handed-back claim is no attempt


def test_finished_jobs_beyond_the_history_are_forgotten(store: CollectionStore) -> None:
    store.create("kb", FIXED, EMBEDDER, DIM)
    ids = []
    for i in range(3):
        view, texts = queued("kb", {f"d{i}": "text"})
        store.add_job(view, texts)
        claimed = store.claim_job("w", lease_s=30)
        assert claimed is not None
        job = Job.from_view(claimed[0], claimed[1])
        job.set_document(0, state="ingested", chunks=1)
        job.conclude()
        assert store.finish_job(job.view(), "w", history=2)
        ids.append(view.job_id)
    assert store.job(ids[0]) is None and store.job(ids[1]) is not None and store.job(ids[2]) is not None


def test_deleting_a_collection_fails_its_unfinished_jobs(store: CollectionStore) -> None:
    store.create("kb", FIXED, EMBEDDER, DIM)
    running, texts = queued("kb", {"d1": "one"})
    store.add_job(running, texts)
    assert store.claim_job("w1", lease_s=30) is not None
    waiting, texts = queued("kb", {"d2": "two"})
    store.add_job(waiting, texts)
    store.delete("kb")
    for job_id in (running.job_id, waiting.job_id):
        job = store.job(job_id)
        assert job is not None and job.state == "failed" and "deleted" in (job.error or "")
        assert job.documents[0].state == "failed"
    assert store.claim_job("w2", lease_s=30) is None
    assert not store.save_job(running, "w1", lease_s=30)  # the worker of the running one must stop


def test_a_job_whose_worker_died_is_finished_by_another(
    open_store: StoreFactory, engine: TorchEngine, embedder: Embedder
) -> None:
    """A worker committed the first document, then died; another runs the rest and redoes nothing."""
    seen: list[str] = []
    m = CollectionManager(open_store(), lambda: engine, embedder_factory=lambda: embedder, job_poll_s=0.2)
    m.on_chunks_ingested = lambda name, chunks: seen.append(chunks[0].doc_id)
    m.create("kb", FIXED)
    m._worker.close()  # this manager's worker stays out of it until the "dead" one's lease runs out
    view = m.submit_documents("kb", [("nile.txt", NILE), ("tea.txt", "Tea is a drink made from leaves.")])
    claimed = m.store.claim_job("dead-worker", lease_s=1.0)
    assert claimed is not None and claimed[0].job_id == view.job_id
    first = view.documents[0]
    from tests.retrieval.test_collection_store import make_doc as fake_doc

    m.collection("kb").add(first.doc_id, first.name, fake_doc(NILE, 2, 7))  # committed before dying
    m.close()

    m = CollectionManager(open_store(), lambda: engine, embedder_factory=lambda: embedder, job_poll_s=0.2)
    m.on_chunks_ingested = lambda name, chunks: seen.append(chunks[0].doc_id)
    try:
        deadline = time.monotonic() + 60
        while m.job(view.job_id).state not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
        done = m.job(view.job_id)
        assert done.state == "succeeded", done
        assert done.documents[0].chunks == 2  # kept as committed, not prepared again
        assert seen == [view.documents[1].doc_id]
        assert [d.name for d in m.documents("kb")] == ["nile.txt", "tea.txt"]
    finally:
        m.close()


# --- one store only ---------------------------------------------------------------------------


def test_sqlite_store_refuses_a_second_process(tmp_path: Path) -> None:
    root = tmp_path / "collections"
    first = SqliteCollectionStore(root)
    with pytest.raises(StoreInUse, match="RAGBLEND_DATABASE_URL"):
        SqliteCollectionStore(root)
    first.close()
    SqliteCollectionStore(root).close()  # free again once the holder is gone


def test_postgres_replicas_see_each_others_writes_and_never_share_a_job(postgres: PostgresServer) -> None:
    url = postgres.fresh_database()
    a, b = PostgresCollectionStore(url), PostgresCollectionStore(url)
    try:
        a.create("kb", FIXED, EMBEDDER, DIM)
        doc = make_doc("alpha " * 30, 3, 1)
        b.open("kb").add("x", "X", doc)  # b writes into the collection a created
        assert top(a, "kb", doc.chunks[1].index_vector, 1) == [("x", 1)]
        jobs = []
        for i in range(6):
            view, texts = queued("kb", {f"d{i}": "t"})
            a.add_job(view, texts)
            jobs.append(view.job_id)
        got: list[str] = []
        lock = threading.Lock()

        def claim_all(store: PostgresCollectionStore, worker: str) -> None:
            while (claimed := store.claim_job(worker, lease_s=30)) is not None:
                with lock:
                    got.append(claimed[0].job_id)

        threads = [threading.Thread(target=claim_all, args=(s, w)) for s, w in ((a, "wa"), (b, "wb"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(got) == sorted(jobs)  # each job claimed exactly once
        assert b.job(jobs[0]) == a.job(jobs[0])
        a.delete("kb")
        with pytest.raises(CollectionNotFound):
            b.open("kb")
    finally:
        a.close()
        b.close()


def test_a_postgres_database_made_before_page_starts_gains_the_column(postgres: PostgresServer) -> None:
    url = postgres.fresh_database()
    store = PostgresCollectionStore(url)
    store.create("kb", FIXED, EMBEDDER, DIM).add("old", "old.txt", make_doc("alpha " * 30, 3, 1))
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:  # the table as first released
        conn.execute("ALTER TABLE ragblend_documents DROP COLUMN page_starts")
    store = PostgresCollectionStore(url)
    try:
        col = store.open("kb")
        col.add("new", "new.pdf", replace(make_doc("beta " * 20, 2, 2), page_starts=(0, 50)))
        assert col.page_starts(["old", "new"]) == {"new": (0, 50)}
        assert {d.name: d.pages for d in col.documents()} == {"old.txt": None, "new.pdf": 2}
    finally:
        store.close()
