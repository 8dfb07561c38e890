"""The collection-store interface: where collections, their documents, chunks and vectors, and the
ingestion jobs that fill them live. Two implementations: SQLite + FAISS in the data directory (one
process, the default) and Postgres + pgvector (any number of gateway replicas, RAGBLEND_DATABASE_URL).

Rules every implementation keeps:

- Names are stored names (the tenant scoping happens above, in the gateway): a store never needs to
  know who owns a collection, and one tenant's name can never reach another's rows.
- A document is committed in one transaction with all its chunks and vectors; a failure (or a dead
  process) part-way leaves no trace of it. Chunk ids are never reused.
- What a store says is true for every process using it at once: a collection created, a document
  committed or deleted, a job's state. A store that cannot be shared refuses a second process.
- A job, with the texts of its documents, is stored before `add_job` returns. A worker owns a job only
  while its lease runs: `claim_job` hands out a queued job, or one whose lease expired (its worker
  died); `save_job` renews the lease and says False once the job is no longer the worker's (the lease
  was lost, or the collection deleted), after which the worker must stop.
- Jobs queue per owner (jobs.job_owner: the tenant's tag in the stored name). `add_job` with a `limit`
  counts the owner's queued and running jobs and the new one in one transaction: past the limit it
  raises QueueFull and stores nothing, however many processes add at once. `claim_job` is fair
  between owners: it takes the oldest ready job of the owner whose last claim is the oldest (an owner
  never served first), so one owner's flood delays another's upload by at most a job per owner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.config import CollectionConfig
from retrieval.ingest import PreparedDocument
from retrieval.jobs import JobView
from retrieval.metadata import MetadataFilter
from retrieval.records import DocumentInfo, StoredChunk

# a job whose worker died this many times is failed rather than handed out again
MAX_JOB_ATTEMPTS = 3


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    config: CollectionConfig
    embedder: str
    dim: int
    documents: int
    chunks: int
    created_at: float


class StoredCollection(ABC):
    """One collection: its settings (fixed at creation), documents, chunks and vectors.

    Methods raise CollectionClosed once the collection was deleted (or its store closed), and
    DocumentNotFound for an unknown document id."""

    name: str
    config: CollectionConfig
    embedder: str
    dim: int
    created_at: float

    @property
    @abstractmethod
    def closed(self) -> bool: ...

    @abstractmethod
    def add(
        self,
        doc_id: str,
        name: str,
        doc: PreparedDocument,
        metadata: dict[str, Any] | None = None,
        replace_named: bool = False,
    ) -> list[StoredChunk]:
        """Commit a document, its metadata and its chunks atomically; its stored chunks in order.
        With `replace_named`, the other documents called `name` go in the same transaction (a
        reader sees the old version or the new, never both or neither). A document id that is
        already there is refused (DocumentExists): a job resumed elsewhere never doubles it. The
        store records the text's content_hash (records.content_hash)."""

    @abstractmethod
    def delete_document(self, doc_id: str) -> int:
        """Remove a document and its chunks; how many chunks went."""

    @abstractmethod
    def chunk_count(self, doc_id: str) -> int | None:
        """How many chunks document `doc_id` has, None when it is not stored."""

    @abstractmethod
    def page_starts(self, doc_ids: Iterable[str]) -> dict[str, tuple[int, ...]]:
        """Where each page starts in the text of those of `doc_ids` that are paged documents."""

    @abstractmethod
    def search(
        self, query: np.ndarray, k: int, filter: MetadataFilter | None = None
    ) -> list[tuple[StoredChunk, str, float]]:
        """(chunk, document name, inner-product score) of the best `k` chunks, best first. A filter
        is applied inside the search (never by fetching more and dropping): the best `k` among the
        chunks of matching documents."""

    @abstractmethod
    def keyword_search(
        self, query: str, k: int, filter: MetadataFilter | None = None
    ) -> list[tuple[StoredChunk, str, float]]:
        """(chunk, document name, keyword score, higher is better) of the best `k` chunks matching
        any term of `query` (keywords.query_terms), best first; `filter` as for `search`."""

    @abstractmethod
    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The metadata of each stored document among `doc_ids`."""

    @abstractmethod
    def named(self, name: str) -> list[DocumentInfo]:
        """The documents called `name` (with their content hashes), oldest first."""

    @abstractmethod
    def info(self) -> CollectionInfo: ...

    @abstractmethod
    def documents(self) -> list[DocumentInfo]: ...

    @abstractmethod
    def document(self, doc_id: str) -> tuple[DocumentInfo, str, list[StoredChunk]]: ...

    def flush(self) -> None:  # noqa: B027 (optional: most stores have nothing to flush)
        """Persist derived state (an index file) after a batch of writes; nothing by default."""

    def close(self) -> None:  # noqa: B027
        """Release what this handle holds; nothing by default."""


class CollectionStore(ABC):
    """The catalog of collections plus the ingestion jobs (see the module docstring for the rules)."""

    @abstractmethod
    def create(self, name: str, config: CollectionConfig, embedder: str, dim: int) -> StoredCollection:
        """A new empty collection; CollectionExists when the name is taken."""

    @abstractmethod
    def open(self, name: str) -> StoredCollection:
        """The collection as of now; CollectionNotFound when there is none of that name."""

    @abstractmethod
    def names(self) -> list[str]:
        """Every collection's name, sorted."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete the collection and everything in it, and fail its unfinished jobs;
        CollectionNotFound when there is none."""

    @abstractmethod
    def close(self) -> None: ...

    # --- jobs -----------------------------------------------------------------------------------
    @abstractmethod
    def add_job(self, job: JobView, texts: dict[str, str], limit: int | None = None) -> None:
        """Store a queued job and the text of each of its documents (doc_id -> text); QueueFull
        (nothing stored) when its owner already has `limit` jobs queued or running."""

    @abstractmethod
    def unfinished_jobs(self, owner: str) -> int:
        """How many jobs of `owner` (jobs.job_owner) are queued or running."""

    @abstractmethod
    def claim_job(self, worker: str, lease_s: float) -> tuple[JobView, dict[str, str], int] | None:
        """The next job ready to run (the oldest of the owner served least recently), now owned by
        `worker` for `lease_s` seconds: its state, the texts of its documents and how many times it
        was claimed (this claim included); or None."""

    @abstractmethod
    def save_job(self, job: JobView, worker: str, lease_s: float) -> bool:
        """Record a running job's progress and renew its lease; False if `worker` no longer owns it."""

    @abstractmethod
    def finish_job(self, job: JobView, worker: str | None, history: int) -> bool:
        """Record a job's final state and drop its texts (keeping the newest `history` finished jobs);
        False if `worker` no longer owns it (None: whoever owns it)."""

    @abstractmethod
    def release_job(self, job_id: str, worker: str) -> None:
        """Hand a job back unfinished (this worker is stopping): the next claim may take it at once,
        this claim does not count as an attempt, and this worker's later saves are refused."""

    @abstractmethod
    def job(self, job_id: str) -> JobView | None: ...
