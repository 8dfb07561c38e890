"""SQLite store of one collection: its config, documents and chunks (text, offsets, token ids, vectors).

The store is the source of truth. Every change is one transaction that also bumps `version`, so the
FAISS index file written for a version is known to match exactly that state. WAL mode lets readers
run while a document is being written. Chunk ids come from AUTOINCREMENT: never reused, so a stale
id in an index or a KV-cache hook can never point at another chunk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.filter_sql import sqlite_where
from retrieval.keywords import fts5_query
from retrieval.metadata import MetadataFilter
from retrieval.records import DocumentInfo, StoredChunk, content_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, text TEXT NOT NULL, n_tokens INTEGER NOT NULL,
    chunker TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL,
    token_ids BLOB NOT NULL, n_tokens INTEGER NOT NULL, chunker TEXT NOT NULL,
    embedding_version TEXT NOT NULL, chunk_vector BLOB NOT NULL, index_vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id, seq);
"""
# Columns added after the first release: added to older files on open.
DOCUMENT_COLUMNS = {
    "metadata": "ALTER TABLE documents ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'",
    "content_hash": "ALTER TABLE documents ADD COLUMN content_hash TEXT",
}
# Keyword search: an FTS5 index over the chunks' text (external content, kept by triggers; chunk
# text never changes, so insert and delete suffice). Porter stemming over unicode61 tokens.
KEYWORD_SCHEMA = """
CREATE INDEX IF NOT EXISTS documents_by_name ON documents(name);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61');
CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild');
"""
_CHUNK_COLUMNS = "id, doc_id, seq, start, end, text, token_ids, n_tokens, chunker, embedding_version"


@dataclass(frozen=True)
class NewChunk:
    seq: int
    start: int
    end: int
    text: str
    token_ids: Sequence[int]
    chunker: str
    embedding_version: str
    chunk_vector: np.ndarray
    index_vector: np.ndarray


def _row_to_chunk(row: sqlite3.Row) -> StoredChunk:
    return StoredChunk(
        chunk_id=row["id"],
        doc_id=row["doc_id"],
        seq=row["seq"],
        start=row["start"],
        end=row["end"],
        text=row["text"],
        token_ids=np.frombuffer(row["token_ids"], dtype=np.int32).tolist(),
        n_tokens=row["n_tokens"],
        chunker=row["chunker"],
        embedding_version=row["embedding_version"],
    )


class ChunkStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        # One connection shared under the collection's lock; autocommit off via explicit BEGIN.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a file written by an earlier version up to the current schema (one transaction)."""
        db = self._db
        have = {r["name"] for r in db.execute("PRAGMA table_info(documents)")}
        has_fts = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks_fts'").fetchone()
        if set(DOCUMENT_COLUMNS) <= have and has_fts:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            have = {r["name"] for r in db.execute("PRAGMA table_info(documents)")}
            for column, statement in DOCUMENT_COLUMNS.items():
                if column not in have:
                    db.execute(statement)
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks_fts'").fetchone():
                for statement in KEYWORD_SCHEMA.split(";\n"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # --- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def version(self) -> int:
        return int(self.get_meta("version") or 0)

    def _bump(self) -> None:
        self.set_meta("version", self.version + 1)

    # --- writes (each one transaction) ----------------------------------------------------------
    def add_document(
        self,
        doc_id: str,
        name: str,
        text: str,
        n_tokens: int,
        chunker: str,
        chunks: Iterable[NewChunk],
        metadata: dict[str, Any] | None = None,
        replace_named: bool = False,
    ) -> tuple[list[int], list[int]]:
        """Insert a document and all its chunks atomically (with `replace_named`, removing the other
        documents of that name in the same transaction); the new chunk ids in order, and the ids of
        the chunks removed."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            removed: list[int] = []
            if replace_named:
                old = [r["id"] for r in db.execute("SELECT id FROM documents WHERE name = ?", (name,))]
                for old_id in old:
                    removed += [
                        r["id"] for r in db.execute("SELECT id FROM chunks WHERE doc_id = ?", (old_id,))
                    ]
                    db.execute("DELETE FROM chunks WHERE doc_id = ?", (old_id,))
                    db.execute("DELETE FROM documents WHERE id = ?", (old_id,))
            db.execute(
                "INSERT INTO documents (id, name, text, n_tokens, chunker, created_at, metadata, "
                "content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc_id, name, text, n_tokens, chunker, time.time(), json.dumps(metadata or {}),
                    content_hash(text),
                ),
            )  # fmt: skip
            ids = [self._insert_chunk(doc_id, c) for c in chunks]
            self._bump()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ids, removed

    def _insert_chunk(self, doc_id: str, c: NewChunk) -> int:
        cur = self._db.execute(
            "INSERT INTO chunks (doc_id, seq, start, end, text, token_ids, n_tokens, chunker, "
            "embedding_version, chunk_vector, index_vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                doc_id, c.seq, c.start, c.end, c.text,
                np.asarray(c.token_ids, dtype=np.int32).tobytes(), len(c.token_ids), c.chunker,
                c.embedding_version,
                np.asarray(c.chunk_vector, dtype=np.float32).tobytes(),
                np.asarray(c.index_vector, dtype=np.float32).tobytes(),
            ),
        )  # fmt: skip
        return int(cur.lastrowid or 0)

    def delete_document(self, doc_id: str) -> list[int] | None:
        """Delete a document and its chunks; returns the removed chunk ids (None if no such document)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
                db.execute("ROLLBACK")
                return None
            ids = [r["id"] for r in db.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
            db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
            self._bump()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ids

    # --- reads ----------------------------------------------------------------------------------
    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", list(ids))
        return {r["id"]: _row_to_chunk(r) for r in rows}

    def document_names(self, doc_ids: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(doc_ids))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(f"SELECT id, name FROM documents WHERE id IN ({marks})", wanted)
        return {r["id"]: r["name"] for r in rows}

    def document_metadata(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = sorted(set(doc_ids))
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(f"SELECT id, metadata FROM documents WHERE id IN ({marks})", wanted)
        return {r["id"]: json.loads(r["metadata"]) for r in rows}

    def named(self, name: str) -> list[DocumentInfo]:
        """The documents called `name`, oldest first."""
        rows = self._db.execute(
            "SELECT d.id, d.name, length(d.text) AS n_chars, d.n_tokens, d.chunker, d.created_at, "
            "d.metadata, d.content_hash, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id) AS n_chunks "
            "FROM documents d WHERE d.name = ? ORDER BY d.created_at, d.id",
            (name,),
        )
        return [_row_to_info(r) for r in rows]

    def matching_chunk_ids(self, f: MetadataFilter) -> np.ndarray:
        """The ids of the chunks whose document passes `f`."""
        where, params = sqlite_where(f)
        rows = self._db.execute(
            f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {where}", params
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def keyword_search(
        self, terms: Sequence[str], k: int, f: MetadataFilter | None
    ) -> list[tuple[int, float]]:
        """(chunk id, BM25 score, higher is better) of the best `k` chunks matching any of `terms`
        among the documents passing `f`."""
        if not terms or k <= 0:
            return []
        where, params = sqlite_where(f)
        rows = self._db.execute(
            "SELECT chunks_fts.rowid AS id, bm25(chunks_fts) AS rank FROM chunks_fts "
            "JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.doc_id "
            f"WHERE chunks_fts MATCH ? AND {where} ORDER BY rank, id LIMIT ?",
            [fts5_query(terms), *params, k],
        ).fetchall()
        return [(int(r["id"]), -float(r["rank"])) for r in rows]

    def document_chunks(self, doc_id: str) -> list[StoredChunk]:
        query = f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE doc_id = ? ORDER BY seq"
        rows = self._db.execute(query, (doc_id,))
        return [_row_to_chunk(r) for r in rows]

    def document(self, doc_id: str) -> tuple[DocumentInfo, str] | None:
        row = self._db.execute(
            "SELECT d.*, (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id) AS n_chunks "
            "FROM documents d WHERE d.id = ?",
            (doc_id,),
        ).fetchone()
        return None if row is None else (_row_to_info(row), row["text"])

    def documents(self) -> list[DocumentInfo]:
        rows = self._db.execute(
            "SELECT d.id, d.name, length(d.text) AS n_chars, d.n_tokens, d.chunker, d.created_at, "
            "d.metadata, d.content_hash, "
            "COUNT(c.id) AS n_chunks FROM documents d LEFT JOIN chunks c ON c.doc_id = d.id "
            "GROUP BY d.id ORDER BY d.created_at, d.id"
        )
        return [_row_to_info(r) for r in rows]

    def counts(self) -> tuple[int, int]:
        docs = self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)

    def index_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """All chunk ids and their indexed vectors, to rebuild the FAISS index."""
        rows = self._db.execute("SELECT id, index_vector FROM chunks ORDER BY id").fetchall()
        ids = np.array([r["id"] for r in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r["index_vector"] for r in rows), dtype=np.float32)
        return ids, vectors.reshape(len(rows), dim)


def _row_to_info(row: sqlite3.Row) -> DocumentInfo:
    keys = row.keys()
    return DocumentInfo(
        doc_id=row["id"],
        name=row["name"],
        n_chars=row["n_chars"] if "n_chars" in keys else len(row["text"]),
        n_tokens=row["n_tokens"],
        n_chunks=row["n_chunks"],
        chunker=row["chunker"],
        created_at=row["created_at"],
        metadata=json.loads(row["metadata"]),
        content_hash=row["content_hash"],
    )
