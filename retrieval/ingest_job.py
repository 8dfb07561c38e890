"""What an ingestion job does on the worker thread: wait for the LM, then each document in turn."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from retrieval.collection_store import StoredCollection
from retrieval.embedder import Embedder
from retrieval.errors import CollectionClosed, ModelUnavailable
from retrieval.ingest import prepare_document
from retrieval.job_worker import JobAbandoned
from retrieval.jobs import DONE_STATES, DocumentTask, Job
from retrieval.lm import ChunkingLM, LanguageModel, LMHandle, has_forward
from retrieval.records import DocumentInfo, content_hash

if TYPE_CHECKING:
    from retrieval.collections import CollectionManager


def unchanged_document(col: StoredCollection, task: DocumentTask, text: str) -> DocumentInfo | None:
    """The stored document `task` would replace, when it is the only one of that name and has the
    same text (by content hash) and metadata: re-sending it changes nothing."""
    existing = col.named(task.name)
    if len(existing) != 1:
        return None
    doc = existing[0]
    same = doc.content_hash == content_hash(text) and doc.metadata == task.metadata
    return doc if same and doc.doc_id != task.doc_id else None


log = logging.getLogger(__name__)


class IngestRunner:
    def __init__(
        self,
        manager: CollectionManager,
        lm_provider: Callable[[], LanguageModel | None],
        lm_wait_s: float,
    ) -> None:
        self.manager = manager
        self.lm_provider = lm_provider
        self.lm_wait_s = lm_wait_s
        self._handle = LMHandle()

    def _wait_for_lm(self, job: Job) -> ChunkingLM:
        deadline = time.monotonic() + self.lm_wait_s
        job.report(0, "waiting", 0.0)
        while True:
            lm = self.lm_provider()
            if lm is not None:
                if not has_forward(lm):
                    raise ModelUnavailable("the chunkers need the embedded torch engine's model")
                return self._handle.wrap(lm)
            if time.monotonic() > deadline:
                raise ModelUnavailable(f"the model did not load within {self.lm_wait_s:g} s")
            time.sleep(0.25)

    def run(self, job: Job) -> None:
        col: StoredCollection = job.target
        if col.closed:
            raise CollectionClosed(job.collection)
        if all(d.state in DONE_STATES for d in job.documents):
            return  # every document was unchanged (or committed by an earlier run): no model needed
        lm = self._wait_for_lm(job)
        embedder = self.manager.embedder("ingest")
        try:
            for i in range(len(job.documents)):
                if job.documents[i].state not in DONE_STATES:  # a resumed job keeps what was committed
                    self._one(job, i, col, lm, embedder)
        finally:
            if not col.closed:
                col.flush()

    def _one(self, job: Job, i: int, col: StoredCollection, lm: ChunkingLM, embedder: Embedder) -> None:
        task = job.documents[i]
        text = job.texts.pop(task.doc_id)
        job.set_document(i, state="running")
        try:
            # checked again here, at commit time: a job queued meanwhile may have stored the same text
            same = unchanged_document(col, task, text) if task.by_name else None
            if same is not None:
                job.set_document(i, doc_id=same.doc_id, state="unchanged", chunks=same.n_chunks)
                return
            report = lambda stage, fraction: job.report(i, stage, fraction)  # noqa: E731
            prepared = prepare_document(text, col.config, lm, embedder, report)
            job.report(i, "indexing", 0.0)
            chunks = col.add(task.doc_id, task.name, prepared, task.metadata, replace_named=task.by_name)
        except JobAbandoned:
            raise
        except CollectionClosed:
            job.set_document(i, state="failed", error=f"collection {col.name!r} was deleted")
            raise
        except Exception as exc:
            log.exception("document %s of job %s failed", task.doc_id, job.job_id)
            job.set_document(i, state="failed", error=f"{type(exc).__name__}: {exc}")
            return
        job.set_document(i, state="ingested", chunks=len(chunks))
        job.report(i, "kv_cache", 0.0)
        try:
            self.manager.on_chunks_ingested(col.name, chunks)
        except Exception as exc:  # the document is stored and searchable; only its warm caches are missing
            log.exception("chunk KV precompute failed for document %s", task.doc_id)
            job.warn(f"document {task.doc_id}: KV cache precompute failed: {type(exc).__name__}: {exc}")
        job.report(i, "kv_cache", 1.0)
