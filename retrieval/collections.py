"""The collection manager: every collection under one folder, ingestion jobs, and retrieval.

Collections live in `root/<name>/`. A new one is built in a hidden folder and renamed into place,
and a deleted one is renamed away before it is removed, so a crash never leaves half a collection;
leftovers of either are cleaned up on open.

The language model (for chunking) comes from `lm_provider`, called when a job starts: it returns
the engine once loaded (None while loading) and may raise if loading failed. After each document
is committed, `on_chunks_ingested(collection, chunks)` runs on the ingestion thread; it does nothing
by default and is where chunk KV caches get precomputed.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from retrieval.collection import Collection, CollectionInfo
from retrieval.config import CollectionConfig, check_collection_name
from retrieval.documents import check_text
from retrieval.embedder import Embedder
from retrieval.errors import (
    CollectionClosed,
    CollectionExists,
    CollectionNotFound,
    InvalidRequest,
    JobNotFound,
    ModelUnavailable,
    RetrievalError,
)
from retrieval.ingest_job import IngestRunner
from retrieval.jobs import DocumentTask, Job, JobRunner, JobView
from retrieval.lm import LanguageModel
from retrieval.records import DocumentInfo, RetrievedChunk, StoredChunk

log = logging.getLogger(__name__)

ChunksHook = Callable[[str, Sequence[StoredChunk]], None]


def _no_hook(collection: str, chunks: Sequence[StoredChunk]) -> None:
    return None


class CollectionManager:
    def __init__(
        self,
        root: Path,
        lm_provider: Callable[[], LanguageModel | None],
        embedder_dir: Path | None = None,
        max_document_chars: int = 1_000_000,
        max_documents_per_job: int = 64,
        lm_wait_s: float = 600.0,
        job_history: int = 1000,
        embedder_factory: Callable[[], Embedder] | None = None,
    ) -> None:
        self.root = root
        self.max_document_chars = max_document_chars
        self.max_documents_per_job = max_documents_per_job
        self.on_chunks_ingested: ChunksHook = _no_hook
        self._make_embedder = embedder_factory or (lambda: Embedder(embedder_dir))
        self._embedders: dict[str, Embedder] = {}
        self._embedder_lock = threading.Lock()
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._open_all()
        self._ingest = IngestRunner(self, lm_provider, lm_wait_s)
        self._jobs = JobRunner(self._ingest.run, job_history)

    # --- lifecycle ------------------------------------------------------------------------------
    def _open_all(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith("."):
                shutil.rmtree(folder, ignore_errors=True)  # an unfinished create or delete
            elif folder.is_dir():
                try:
                    self._collections[folder.name] = Collection.open(folder.name, folder)
                except Exception:
                    log.exception("cannot open collection %s; skipped", folder.name)

    def close(self) -> None:
        self._jobs.close()
        with self._lock:
            for col in self._collections.values():
                col.close()
            self._collections.clear()

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
    def collection(self, name: str) -> Collection:
        with self._lock:
            col = self._collections.get(name)
        if col is None:
            raise CollectionNotFound(name)
        return col

    def create(self, name: str, config: CollectionConfig) -> CollectionInfo:
        try:
            check_collection_name(name, stored=True)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        embedder = self.embedder("query")
        with self._lock:
            if name in self._collections or (self.root / name).exists():
                raise CollectionExists(name)
            staging = self.root / f".creating-{uuid.uuid4().hex}"
            Collection.create(name, staging, config, embedder.name, embedder.dim, time.time()).close()
            staging.rename(self.root / name)
            col = Collection.open(name, self.root / name)
            self._collections[name] = col
        return col.info()

    def list_collections(self) -> list[CollectionInfo]:
        with self._lock:
            cols = sorted(self._collections.values(), key=lambda c: c.name)
        infos = []
        for col in cols:
            try:
                infos.append(col.info())
            except CollectionClosed:
                continue  # deleted meanwhile
        return infos

    def info(self, name: str) -> CollectionInfo:
        return self.collection(name).info()

    def delete(self, name: str) -> None:
        with self._lock:
            col = self._collections.pop(name, None)
            if col is None:
                raise CollectionNotFound(name)
            col.close()
            trash = self.root / f".deleting-{uuid.uuid4().hex}"
            col.folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    # --- documents ------------------------------------------------------------------------------
    def documents(self, name: str) -> list[DocumentInfo]:
        return self.collection(name).documents()

    def document(self, name: str, doc_id: str) -> tuple[DocumentInfo, str, list[StoredChunk]]:
        return self.collection(name).document(doc_id)

    def delete_document(self, name: str, doc_id: str) -> int:
        """Remove a document and its chunks from store and index; returns how many chunks went."""
        return self.collection(name).delete_document(doc_id)

    def submit_documents(self, name: str, documents: Sequence[tuple[str, str]]) -> JobView:
        """Queue (name, text) documents for ingestion; returns the job (ids assigned now)."""
        col = self.collection(name)
        if not documents:
            raise InvalidRequest("no documents given")
        if len(documents) > self.max_documents_per_job:
            limit = self.max_documents_per_job
            raise InvalidRequest(f"{len(documents)} documents, at most {limit} per request")
        tasks, texts = [], {}
        for i, (doc_name, text) in enumerate(documents):
            label = doc_name or f"document {i}"
            check_text(label, text, self.max_document_chars)
            task = DocumentTask(doc_id=uuid.uuid4().hex, name=doc_name or f"doc-{i}")
            tasks.append(task)
            texts[task.doc_id] = text
        return self._jobs.submit(Job(collection=name, documents=tasks, texts=texts, target=col))

    def job(self, job_id: str) -> JobView:
        view = self._jobs.get(job_id)
        if view is None:
            raise JobNotFound(job_id)
        return view

    # --- retrieval ------------------------------------------------------------------------------
    def retrieve(self, collection: str, query: str, top_k: int) -> list[RetrievedChunk]:
        """The `top_k` chunks of `collection` best matching `query`, best first (blocking)."""
        col = self.collection(collection)
        if not query.strip():
            raise InvalidRequest("query must not be empty")
        if top_k < 1:
            raise InvalidRequest("top_k must be at least 1")
        embedder = self.embedder("query")
        if (embedder.name, embedder.dim) != (col.embedder, col.dim):
            raise RetrievalError(
                f"collection {collection!r} was embedded with {col.embedder} ({col.dim} dims); "
                f"this server embeds with {embedder.name} ({embedder.dim} dims)"
            )
        hits = col.search(embedder.embed_query(query), top_k)
        return [
            RetrievedChunk(
                collection, c.chunk_id, c.doc_id, doc_name, c.seq, c.start, c.end, c.text, score, c.token_ids
            )
            for c, doc_name, score in hits
        ]
