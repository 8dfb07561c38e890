"""One collection on disk: its SQLite store plus the FAISS index derived from it.

Layout of the collection's folder:
    collection.db        documents, chunks, config (the source of truth)
    index-<version>.faiss the index as of store version <version>

Whatever happened before (a crash mid-document, a crash between a commit and the index write), on
open the index is loaded only if its file carries the store's current version; otherwise it is
rebuilt from the vectors in the store. A document is committed in one transaction before its
vectors reach the in-memory index, so a failure while preparing or writing it changes nothing.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.collection_store import CollectionInfo, StoredCollection
from retrieval.config import CollectionConfig
from retrieval.errors import CollectionClosed, DocumentExists, DocumentNotFound, InvalidDocument
from retrieval.index import VectorIndex
from retrieval.ingest import PreparedDocument
from retrieval.keywords import query_terms
from retrieval.metadata import MetadataFilter
from retrieval.records import DocumentInfo, StoredChunk
from retrieval.store import ChunkStore

log = logging.getLogger(__name__)

DB_FILE = "collection.db"

__all__ = ["DB_FILE", "Collection", "CollectionInfo"]


class Collection(StoredCollection):
    def __init__(self, name: str, folder: Path, store: ChunkStore) -> None:
        self.name = name
        self.folder = folder
        self.store = store
        self.config = CollectionConfig.model_validate(store.get_meta("config"))
        self.dim = int(store.get_meta("dim"))
        self.embedder = str(store.get_meta("embedder"))
        self.created_at = float(store.get_meta("created_at"))
        self.lock = threading.RLock()
        self._closed = False
        self.index = self._load_or_rebuild_index()
        self._saved_version = self.store.version if self._index_file().exists() else -1

    @classmethod
    def create(
        cls, name: str, folder: Path, cfg: CollectionConfig, embedder: str, dim: int, now: float
    ) -> Collection:
        folder.mkdir(parents=True, exist_ok=False)
        store = ChunkStore(folder / DB_FILE)
        for key, value in (
            ("config", cfg.model_dump(mode="json")),
            ("embedder", embedder),
            ("dim", dim),
            ("created_at", now),
            ("version", 0),
        ):
            store.set_meta(key, value)
        return cls(name, folder, store)

    @classmethod
    def open(cls, name: str, folder: Path) -> Collection:
        if not (folder / DB_FILE).is_file():
            raise FileNotFoundError(f"{folder} holds no {DB_FILE}")
        return cls(name, folder, ChunkStore(folder / DB_FILE))

    @property
    def closed(self) -> bool:
        return self._closed

    # --- the index ------------------------------------------------------------------------------
    def _index_file(self, version: int | None = None) -> Path:
        return self.folder / f"index-{self.store.version if version is None else version}.faiss"

    def _rebuild(self) -> VectorIndex:
        ids, vectors = self.store.index_vectors(self.dim)
        return VectorIndex.build(self.dim, self.config.index, ids, vectors)

    def _load_or_rebuild_index(self) -> VectorIndex:
        path = self._index_file()
        if path.is_file():
            try:
                index = VectorIndex.load(path, self.dim, self.config.index)
                if len(index) == self.store.counts()[1]:
                    return index
                log.warning("index %s does not match the store; rebuilding", path)
            except Exception:
                log.exception("index %s is unreadable; rebuilding", path)
        return self._rebuild()

    def flush(self) -> None:
        """Write the index for the current version (if not written yet) and drop older files."""
        with self.lock:
            if self.closed or self._saved_version == self.store.version:
                return
            self.index.save(self._index_file())
            self._saved_version = self.store.version
            for old in self.folder.glob("index-*.faiss"):
                if old != self._index_file():
                    old.unlink(missing_ok=True)

    # --- writes ---------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise CollectionClosed(self.name)

    def add(
        self,
        doc_id: str,
        name: str,
        doc: PreparedDocument,
        metadata: dict[str, Any] | None = None,
        replace_named: bool = False,
    ) -> list[StoredChunk]:
        with self.lock:
            self._check_open()
            versions = {c.embedding_version for c in doc.chunks}
            if any(not v.startswith(f"{self.embedder}/{self.dim}/") for v in versions):
                raise InvalidDocument(f"collection {self.name!r} was embedded with {self.embedder}", 409)
            try:
                ids, removed = self.store.add_document(
                    doc_id, name, doc.text, doc.n_tokens, doc.chunker, doc.chunks, metadata, replace_named
                )
            except sqlite3.IntegrityError:
                if self.store.document(doc_id) is not None:
                    raise DocumentExists(self.name, doc_id) from None
                raise
            try:
                if removed and not self.index.supports_remove:
                    self.index = self._rebuild()
                else:
                    if removed:
                        self.index.remove(np.array(removed, dtype=np.int64))
                    vectors = np.array([c.index_vector for c in doc.chunks], dtype=np.float32)
                    self.index.add(np.array(ids, dtype=np.int64), vectors.reshape(len(ids), self.dim))
            except Exception:
                log.exception("index update failed; rebuilding %s from the store", self.name)
                self.index = self._rebuild()
            return self.store.document_chunks(doc_id)

    def delete_document(self, doc_id: str) -> int:
        with self.lock:
            self._check_open()
            removed = self.store.delete_document(doc_id)
            if removed is None:
                raise DocumentNotFound(self.name, doc_id)
            if self.index.supports_remove:
                self.index.remove(np.array(removed, dtype=np.int64))
            else:
                self.index = self._rebuild()
            self.flush()
            return len(removed)

    def close(self) -> None:
        with self.lock:
            if not self._closed:
                self.flush()
                self._closed = True
                self.store.close()

    # --- reads ----------------------------------------------------------------------------------
    def search(
        self, query: np.ndarray, k: int, filter: MetadataFilter | None = None
    ) -> list[tuple[StoredChunk, str, float]]:
        """(chunk, document name, score) of the best `k` chunks, best first; with `filter`, only
        chunks of matching documents are considered (a FAISS id selector inside the search)."""
        with self.lock:
            self._check_open()
            allowed = None if filter is None else self.store.matching_chunk_ids(filter)
            if allowed is not None and len(allowed) == 0:
                return []
            scores, ids = self.index.search(query, k, allowed)
            return self._hits([(int(i), float(s)) for s, i in zip(scores, ids, strict=True)])

    def keyword_search(
        self, query: str, k: int, filter: MetadataFilter | None = None
    ) -> list[tuple[StoredChunk, str, float]]:
        with self.lock:
            self._check_open()
            return self._hits(self.store.keyword_search(query_terms(query), k, filter))

    def _hits(self, scored: list[tuple[int, float]]) -> list[tuple[StoredChunk, str, float]]:
        chunks = self.store.chunks([i for i, _ in scored])
        names = self.store.document_names(c.doc_id for c in chunks.values())
        return [(chunks[i], names.get(chunks[i].doc_id, ""), s) for i, s in scored if i in chunks]

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        with self.lock:
            self._check_open()
            return self.store.document_metadata(doc_ids)

    def named(self, name: str) -> list[DocumentInfo]:
        with self.lock:
            self._check_open()
            return self.store.named(name)

    def chunk_count(self, doc_id: str) -> int | None:
        with self.lock:
            self._check_open()
            found = self.store.document(doc_id)
            return None if found is None else found[0].n_chunks

    def info(self) -> CollectionInfo:
        with self.lock:
            self._check_open()
            docs, chunks = self.store.counts()
            return CollectionInfo(
                self.name, self.config, self.embedder, self.dim, docs, chunks, self.created_at
            )

    def documents(self) -> list[DocumentInfo]:
        with self.lock:
            self._check_open()
            return self.store.documents()

    def document(self, doc_id: str) -> tuple[DocumentInfo, str, list[StoredChunk]]:
        with self.lock:
            self._check_open()
            found = self.store.document(doc_id)
            if found is None:
                raise DocumentNotFound(self.name, doc_id)
            return found[0], found[1], self.store.document_chunks(doc_id)
