"""Per-tenant ingestion queues on both stores (SQLite and Postgres): a cap on each tenant's queued and
running jobs that refuses a job whole, and claims that take tenants in turn rather than in arrival
order. Tenants are the tags of stored names (jobs.job_owner); claim order is asserted, never timing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from engine.torch_engine import TorchEngine
from retrieval.collection_store import CollectionStore
from retrieval.collections import CollectionManager
from retrieval.embedder import Embedder
from retrieval.errors import QueueFull
from retrieval.jobs import DocumentTask, Job, JobView, job_owner
from retrieval.pg_store import PostgresCollectionStore
from tests.retrieval.conftest import FIXED, NILE, StoreFactory
from tests.retrieval.test_collection_store import DIM

EMBEDDER = "all-MiniLM-L6-v2"
A, B = "kb.00000000000000aa", "kb.00000000000000bb"  # two tenants' collections of one public name
ANON = "kb"  # the anonymous tenant's


@pytest.fixture()
def store(open_store: StoreFactory) -> Iterator[CollectionStore]:
    s = open_store()
    for name in (A, B, ANON):
        s.create(name, FIXED, EMBEDDER, DIM)
    yield s
    s.close()


def job(collection: str, n: int) -> tuple[JobView, dict[str, str]]:
    """A queued one-document job created at second `n` (so arrival order never rests on the clock)."""
    doc_id = f"{collection}-d{n}"
    view = Job(collection=collection, documents=[DocumentTask(doc_id, f"{n}.txt")], texts={}).view()
    return replace(view, created_at=1_000.0 + n), {doc_id: f"text {n}"}


def finish(store: CollectionStore, claimed: tuple[JobView, dict[str, str], int], worker: str) -> None:
    done = Job.from_view(*claimed[:2])
    done.set_document(0, state="ingested", chunks=1)
    done.conclude()
    assert store.finish_job(done.view(), worker, history=100)


def test_job_owner_is_the_tenant_tag() -> None:
    assert (job_owner(A), job_owner(B), job_owner(ANON)) == ("00000000000000aa", "00000000000000bb", "")


def test_a_tenant_past_its_cap_is_refused_whole_and_others_are_not(store: CollectionStore) -> None:
    accepted = []
    for n in range(3):
        view, texts = job(A, n)
        store.add_job(view, texts, limit=3)
        accepted.append(view.job_id)
    refused, texts = job(A, 3)
    with pytest.raises(QueueFull) as caught:
        store.add_job(refused, texts, limit=3)
    assert (caught.value.unfinished, caught.value.limit, caught.value.status) == (3, 3, 429)
    assert "RAGBLEND_RETRIEVAL_MAX_JOBS_PER_TENANT" in caught.value.message
    assert store.job(refused.job_id) is None  # nothing of it stored
    assert [store.job(i) is not None for i in accepted] == [True, True, True]  # nothing queued lost
    assert store.unfinished_jobs(job_owner(A)) == 3 and store.unfinished_jobs(job_owner(B)) == 0

    for collection in (B, ANON):  # the other tenants are not held to A's count
        view, texts = job(collection, 10)
        store.add_job(view, texts, limit=3)
        assert store.job(view.job_id) is not None
    store.add_job(*job(A, 11))  # no limit given: no cap (the store's callers decide)
    assert store.unfinished_jobs(job_owner(A)) == 4

    claimed = store.claim_job("w", lease_s=60)
    assert claimed is not None and claimed[0].collection == A
    with pytest.raises(QueueFull):  # a running job still counts
        store.add_job(*job(A, 12), limit=4)
    finish(store, claimed, "w")
    assert store.unfinished_jobs(job_owner(A)) == 3
    again, texts = job(A, 13)
    store.add_job(again, texts, limit=4)  # a finished one frees its place
    assert store.job(again.job_id) is not None


def test_claims_take_tenants_in_turn_not_in_arrival_order(store: CollectionStore) -> None:
    """A queued five jobs first, then B two, then the anonymous tenant one: a worker takes A's oldest,
    then B's and the anonymous one before A's second, and so on in turns."""
    ids = {}
    for key, collection, n in [("a0", A, 0), ("a1", A, 1), ("a2", A, 2), ("a3", A, 3), ("a4", A, 4),
                               ("b0", B, 5), ("b1", B, 6), ("x0", ANON, 7)]:  # fmt: skip
        view, texts = job(collection, n)
        store.add_job(view, texts, limit=10)
        ids[view.job_id] = key
    order = []
    while (claimed := store.claim_job("w", lease_s=60)) is not None:
        order.append(ids[claimed[0].job_id])
        finish(store, claimed, "w")
    assert order == ["a0", "b0", "x0", "a1", "b1", "a2", "a3", "a4"]


def test_a_tenant_arriving_later_is_served_before_the_flooding_one_continues(store: CollectionStore) -> None:
    """While A's flood is being worked through, a job B queues is the next one claimed."""
    ids = {}
    for n in range(6):
        view, texts = job(A, n)
        store.add_job(view, texts)
        ids[view.job_id] = f"a{n}"
    first = store.claim_job("w1", lease_s=60)
    second = store.claim_job("w2", lease_s=60)  # a second worker: A's next job (no one else waits)
    assert first is not None and second is not None
    assert (ids[first[0].job_id], ids[second[0].job_id]) == ("a0", "a1")
    late, texts = job(B, 100)
    store.add_job(late, texts)
    finish(store, first, "w1")
    nxt = store.claim_job("w1", lease_s=60)
    assert nxt is not None and nxt[0].job_id == late.job_id  # before a2..a5, though queued after them
    nxt2 = store.claim_job("w1", lease_s=60)
    assert nxt2 is not None and ids[nxt2[0].job_id] == "a2"


def test_a_handed_back_job_keeps_its_place_among_its_tenants_jobs(store: CollectionStore) -> None:
    """Durable jobs under fair turns: a job a stopping worker hands back is claimed again (by
    another worker, with no extra attempt) before its tenant's later jobs."""
    a0, texts = job(A, 0)
    store.add_job(a0, texts)
    store.add_job(*job(A, 1))
    store.add_job(*job(B, 2))
    claimed = store.claim_job("w1", lease_s=60)
    assert claimed is not None and claimed[0].job_id == a0.job_id
    store.release_job(a0.job_id, "w1")
    b = store.claim_job("w2", lease_s=60)  # B has not been served yet: its turn first
    assert b is not None and b[0].collection == B
    again = store.claim_job("w2", lease_s=60)
    assert again is not None and again[0].job_id == a0.job_id and again[2] == 1
    assert again[1] == texts
    assert not store.save_job(a0, "w1", lease_s=60)  # the first worker's saves are refused


def test_the_cap_holds_when_many_add_at_once(open_store: StoreFactory) -> None:
    """Threads (on Postgres: two replicas' stores) adding at once never get past the cap together."""
    first = open_store()
    stores = [first]
    if isinstance(first, PostgresCollectionStore):
        stores.append(open_store())
    try:
        first.create(A, FIXED, EMBEDDER, DIM)
        accepted: list[str] = []
        refused: list[int] = []
        lock = threading.Lock()

        def flood(s: CollectionStore, base: int) -> None:
            for n in range(base, base + 8):
                view, texts = job(A, n)
                try:
                    s.add_job(view, texts, limit=5)
                except QueueFull as exc:
                    with lock:
                        refused.append(exc.unfinished)
                    continue
                with lock:
                    accepted.append(view.job_id)

        threads = [threading.Thread(target=flood, args=(stores[i % len(stores)], 100 * i)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(accepted) == 5 and len(refused) == 27 and set(refused) == {5}
        assert first.unfinished_jobs(job_owner(A)) == 5
        assert all(first.job(i) is not None for i in accepted)
    finally:
        for s in stores:
            s.close()


def test_the_manager_refuses_past_its_cap_with_its_retry_after(
    open_store: StoreFactory, engine: TorchEngine, embedder: Embedder
) -> None:
    m = CollectionManager(
        open_store(),
        lambda: engine,
        embedder_factory=lambda: embedder,
        max_jobs_per_tenant=2,
        queue_retry_after_s=9,
    )
    try:
        m._worker.close()  # the jobs stay queued
        m.create(A, FIXED)
        m.create(B, FIXED)
        m.check_queue(A)  # room: no error
        kept = [m.submit_documents(A, [(f"n{n}.txt", NILE)]).job_id for n in range(2)]
        for attempt in (lambda: m.check_queue(A), lambda: m.submit_documents(A, [("late.txt", NILE)])):
            with pytest.raises(QueueFull) as caught:
                attempt()
            assert (caught.value.unfinished, caught.value.limit, caught.value.retry_after_s) == (2, 2, 9)
        assert [m.job(i).state for i in kept] == ["queued", "queued"]
        assert m.store.unfinished_jobs(job_owner(A)) == 2
        m.check_queue(B)
        m.submit_documents(B, [("b.txt", NILE)])
    finally:
        m.close()
