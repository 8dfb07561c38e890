"""The collection manager: collections in a collection store, ingestion jobs, and retrieval.

The store (collection_store.py) is the system of record: the embedded SQLite + FAISS one in a folder
(one process), or Postgres + pgvector shared by every replica. Submitted jobs are stored with their
texts before `submit_documents` returns; this process's worker (job_worker.py) runs whichever stored
job is ready, whichever process accepted it.

The language model (for chunking) comes from `lm_provider`, called when a job starts: it returns
the engine once loaded (None while loading) and may raise if loading failed. After each document
is committed, `on_chunks_ingested(collection, chunks)` runs on the ingestion thread; it does nothing
by default and is where chunk KV caches get precomputed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from retrieval.collection_store import CollectionInfo, CollectionStore, StoredCollection
from retrieval.config import CollectionConfig, RetrievalMode, check_collection_name
from retrieval.documents import NewDocument, check_text
from retrieval.embedder import Embedder
from retrieval.errors import (
    CollectionClosed,
    CollectionNotFound,
    InvalidRequest,
    JobNotFound,
    ModelUnavailable,
    QueueFull,
    RetrievalError,
)
from retrieval.extract.pages import page_span
from retrieval.ingest_job import IngestRunner, unchanged_document
from retrieval.job_worker import JobWorker
from retrieval.jobs import DONE_STATES, DocumentTask, Job, JobView, job_owner
from retrieval.keywords import reciprocal_rank_fusion
from retrieval.lm import LanguageModel
from retrieval.metadata import MetadataFilter, check_metadata
from retrieval.records import DocumentInfo, RetrievedChunk, StoredChunk
from retrieval.sqlite_store import SqliteCollectionStore

log = logging.getLogger(__name__)

ChunksHook = Callable[[str, Sequence[StoredChunk]], None]


def _no_hook(collection: str, chunks: Sequence[StoredChunk]) -> None:
    return None


def worker_name() -> str:
    """This process's name on the jobs it runs (host and pid, plus a nonce against pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class CollectionManager:
    def __init__(
        self,
        store: CollectionStore | Path,
        lm_provider: Callable[[], LanguageModel | None],
        embedder_dir: Path | None = None,
        max_document_chars: int = 1_000_000,
        max_documents_per_job: int = 64,
        lm_wait_s: float = 600.0,
        job_history: int = 1000,
        embedder_factory: Callable[[], Embedder] | None = None,
        job_lease_s: float = 30.0,
        job_poll_s: float = 1.0,
        max_jobs_per_tenant: int | None = None,
        queue_retry_after_s: int = 10,
    ) -> None:
        # a folder: the embedded store there (kept for callers that name a directory)
        self.store = SqliteCollectionStore(store) if isinstance(store, Path) else store
        self.max_document_chars = max_document_chars
        self.max_documents_per_job = max_documents_per_job
        # queued and running jobs per tenant (None: no cap), and the Retry-After of an upload past it
        self.max_jobs_per_tenant, self.queue_retry_after_s = max_jobs_per_tenant, queue_retry_after_s
        self.on_chunks_ingested: ChunksHook = _no_hook
        self._make_embedder = embedder_factory or (lambda: Embedder(embedder_dir))
        self._embedders: dict[str, Embedder] = {}
        self._embedder_lock = threading.Lock()
        self._ingest = IngestRunner(self, lm_provider, lm_wait_s)
        self.worker_id = worker_name()
        self._worker = JobWorker(
            self.store, self._run_job, self.worker_id, job_lease_s, job_poll_s, job_history
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self._worker.close()
        self.store.close()

    def embedder(self, purpose: str = "query") -> Embedder:
        """The embedding model; queries and ingestion each get their own instance (see Embedder)."""
        with self._embedder_lock:
            if purpose not in self._embedders:
                try:
                    self._embedders[purpose] = self._make_embedder()
                except Exception as exc:
                    raise ModelUnavailable(f"the embedding model failed to load: {exc}") from exc
            return self._embedders[purpose]

    # --- collections ----------------------------------------------------------------------------
    def collection(self, name: str) -> StoredCollection:
        return self.store.open(name)

    def create(self, name: str, config: CollectionConfig) -> CollectionInfo:
        try:
            check_collection_name(name, stored=True)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        embedder = self.embedder("query")
        return self.store.create(name, config, embedder.name, embedder.dim).info()

    def list_collections(self) -> list[CollectionInfo]:
        infos = []
        for name in self.store.names():
            try:
                infos.append(self.store.open(name).info())
            except (CollectionNotFound, CollectionClosed):
                continue  # deleted meanwhile
        return infos

    def info(self, name: str) -> CollectionInfo:
        return self.collection(name).info()

    def delete(self, name: str) -> None:
        """Delete the collection; its queued and running jobs fail."""
        self.store.delete(name)

    # --- documents ------------------------------------------------------------------------------
    def documents(self, name: str) -> list[DocumentInfo]:
        return self.collection(name).documents()

    def document(self, name: str, doc_id: str) -> tuple[DocumentInfo, str, list[StoredChunk]]:
        return self.collection(name).document(doc_id)

    def page_starts(self, name: str, doc_ids: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """Where the pages of those documents that are paged (PDF) start in their texts."""
        return self.collection(name).page_starts(doc_ids)

    def delete_document(self, name: str, doc_id: str) -> int:
        """Remove a document and its chunks from store and index; returns how many chunks went."""
        return self.collection(name).delete_document(doc_id)

    def submit_documents(
        self,
        name: str,
        documents: Sequence[tuple[str, str] | NewDocument],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> JobView:
        """Queue (name, text) documents, each with its `metadata`, for ingestion; returns the job
        (ids assigned now). A named document replaces the collection's document of that name once
        ingested; one whose text and metadata are those already stored is "unchanged" (nothing to do).
        A NewDocument with an `error` (a file that could not be read) is recorded as failed, alone."""
        col = self.collection(name)
        if not documents:
            raise InvalidRequest("no documents given")
        if len(documents) > self.max_documents_per_job:
            limit = self.max_documents_per_job
            raise InvalidRequest(f"{len(documents)} documents, at most {limit} per request")
        if metadata is not None and len(metadata) != len(documents):
            raise InvalidRequest(f"{len(metadata)} metadata objects for {len(documents)} documents")
        tasks, texts = [], {}
        for i, item in enumerate(documents):
            doc = item if isinstance(item, NewDocument) else NewDocument(*item)
            doc_name, text = doc.name, doc.text
            meta = check_metadata(metadata[i] if metadata else None, f"documents.{i}.metadata")
            task = DocumentTask(
                doc_id=uuid.uuid4().hex, name=doc_name or f"doc-{i}", metadata=meta, by_name=bool(doc_name),
                page_starts=doc.page_starts,
            )  # fmt: skip
            if doc.error is not None:
                tasks.append(replace(task, state="failed", error=doc.error))
                continue
            check_text(doc_name or f"document {i}", text, self.max_document_chars)
            same = unchanged_document(col, task, text) if task.by_name else None
            if same is not None:
                task = replace(task, doc_id=same.doc_id, state="unchanged", chunks=same.n_chunks)
            else:
                texts[task.doc_id] = text
            tasks.append(task)
        view = Job(collection=col.name, documents=tasks, texts=texts).view()
        try:  # stored, texts and all, before the caller hears of it; or refused whole
            self.store.add_job(view, texts, self.max_jobs_per_tenant)
        except QueueFull as exc:
            raise QueueFull(exc.unfinished, exc.limit, self.queue_retry_after_s) from None
        self._worker.notify()
        return view

    def check_queue(self, name: str) -> None:
        """QueueFull when the tenant owning stored collection `name` has no room for another job now
        (a cheap look before reading an upload; `submit_documents` decides, atomically)."""
        limit = self.max_jobs_per_tenant
        if limit is not None:
            unfinished = self.store.unfinished_jobs(job_owner(name))
            if unfinished >= limit:
                raise QueueFull(unfinished, limit, self.queue_retry_after_s)

    def job(self, job_id: str) -> JobView:
        view = self.store.job(job_id)
        if view is None:
            raise JobNotFound(job_id)
        return view

    def _run_job(self, job: Job) -> None:
        """Run a claimed job (on the worker thread): documents a previous run committed count as done."""
        try:
            job.target = self.store.open(job.collection)
        except CollectionNotFound:
            raise CollectionClosed(job.collection) from None
        for i, task in enumerate(job.documents):
            if task.state not in DONE_STATES:
                stored = job.target.chunk_count(task.doc_id)
                if stored is not None:
                    job.set_document(i, state="ingested", chunks=stored, error=None)
        self._ingest.run(job)

    # --- retrieval ------------------------------------------------------------------------------
    def retrieve(
        self,
        collection: str,
        query: str,
        top_k: int,
        filter: MetadataFilter | None = None,
        mode: RetrievalMode | None = None,
    ) -> list[RetrievedChunk]:
        """The `top_k` chunks of `collection` best matching `query`, best first (blocking), among the
        documents passing `filter`, by `mode` (default: the collection's)."""
        col = self.collection(collection)
        if not query.strip():
            raise InvalidRequest("query must not be empty")
        if top_k < 1:
            raise InvalidRequest("top_k must be at least 1")
        mode = mode or col.config.retrieval
        if mode == "keyword":
            hits = col.keyword_search(query, top_k, filter)
        else:
            embedder = self.embedder("query")
            if (embedder.name, embedder.dim) != (col.embedder, col.dim):
                raise RetrievalError(
                    f"collection {collection!r} was embedded with {col.embedder} ({col.dim} dims); "
                    f"this server embeds with {embedder.name} ({embedder.dim} dims)"
                )
            vector = embedder.embed_query(query)
            if mode == "dense":
                hits = col.search(vector, top_k, filter)
            else:
                depth = max(top_k, FUSION_DEPTH)
                dense = col.search(vector, depth, filter)
                hits = fuse(dense, col.keyword_search(query, depth, filter), top_k)
        metadata = col.metadata(c.doc_id for c, _, _ in hits)
        pages = col.page_starts({c.doc_id for c, _, _ in hits}) if hits else {}
        return [
            RetrievedChunk(
                collection,
                c.chunk_id,
                c.doc_id,
                doc_name,
                c.seq,
                c.start,
                c.end,
                c.text,
                score,
                c.token_ids,
                metadata.get(c.doc_id, {}),
                page_span(pages.get(c.doc_id), c.start, c.end),
            )
            for c, doc_name, score in hits
        ]


# hybrid retrieval fuses this many candidates (at least) from each of the dense and keyword lists
FUSION_DEPTH = 20

Hit = tuple[StoredChunk, str, float]


def fuse(dense: list[Hit], keyword: list[Hit], top_k: int) -> list[Hit]:
    """The best `top_k` of both lists by reciprocal rank fusion; each hit scored by its fused score."""
    by_id = {c.chunk_id: (c, name) for c, name, _ in [*dense, *keyword]}
    fused = reciprocal_rank_fusion(
        [[c.chunk_id for c, _, _ in dense], [c.chunk_id for c, _, _ in keyword]], top_k
    )
    return [(by_id[i][0], by_id[i][1], score) for i, score in fused]
