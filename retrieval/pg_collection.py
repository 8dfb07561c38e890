"""One collection in Postgres: documents, chunks and their pgvector vectors, read and written through
the store's connection pool. Nothing is cached here, so every replica sees every commit at once.

A document and all its chunks go in one transaction (COPY for the chunks). A collection deleted
meanwhile shows up as a foreign-key violation, reported as CollectionClosed; a document id already
stored (a job resumed on another replica) as DocumentExists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from retrieval.collection_store import CollectionInfo, StoredCollection
from retrieval.config import CollectionConfig
from retrieval.errors import CollectionClosed, DocumentExists, DocumentNotFound
from retrieval.filter_sql import postgres_where
from retrieval.ingest import PreparedDocument
from retrieval.keywords import query_terms
from retrieval.metadata import MetadataFilter
from retrieval.pg_schema import vector_expr
from retrieval.records import DocumentInfo, StoredChunk, content_hash

_CHUNK_COLUMNS = (
    "c.id, c.doc_id, c.seq, c.start_char, c.end_char, c.text, c.token_ids, c.n_tokens, c.chunker, "
    "c.embedding_version"
)
_COPY_TYPES = ["int8", "int8", "text", "int4", "int4", "int4", "text", "bytea", "int4", "text", "text"]


def _chunk(row: tuple[Any, ...]) -> StoredChunk:
    token_ids = np.frombuffer(row[6], dtype=np.int32).tolist()
    return StoredChunk(row[0], row[1], row[2], row[3], row[4], row[5], token_ids, row[7], row[8], row[9])


def _info(row: tuple[Any, ...]) -> DocumentInfo:
    return DocumentInfo(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] or {}, row[8])


# a document summary: id, name, chars, tokens, chunks, chunker, created, metadata, content hash
_INFO = (
    "SELECT d.id, d.name, length(d.text), d.n_tokens, "
    "(SELECT count(*) FROM ragblend_chunks c WHERE c.collection_id = d.collection_id "
    "AND c.doc_id = d.id), d.chunker, d.created_at, d.metadata, d.content_hash "
    "FROM ragblend_documents d WHERE d.collection_id = %s"
)


class PgCollection(StoredCollection):
    def __init__(self, pool: ConnectionPool, row: tuple[Any, ...]) -> None:
        self._pool = pool
        self.id = int(row[0])
        self.name = row[1]
        self.config = CollectionConfig.model_validate(row[2])
        self.embedder, self.dim, self.created_at = row[3], int(row[4]), float(row[5])
        self._id = sql.Literal(self.id)  # a literal, so the planner matches the partial index

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def _check_open(self) -> None:
        if self._pool.closed:
            raise CollectionClosed(self.name)

    # --- writes ---------------------------------------------------------------------------------
    def add(
        self,
        doc_id: str,
        name: str,
        doc: PreparedDocument,
        metadata: dict[str, Any] | None = None,
        replace_named: bool = False,
    ) -> list[StoredChunk]:
        self._check_open()
        chunks = list(doc.chunks)  # a failure while producing them happens before anything is written
        vectors = np.asarray([c.index_vector for c in chunks], dtype=np.float32).reshape(
            len(chunks), self.dim
        )
        stored: list[StoredChunk] = []
        try:
            with self._pool.connection() as conn, conn.transaction():
                if replace_named:  # the chunks go with their documents (ON DELETE CASCADE)
                    conn.execute(
                        "DELETE FROM ragblend_documents WHERE collection_id = %s AND name = %s",
                        (self.id, name),
                    )
                conn.execute(
                    "INSERT INTO ragblend_documents (collection_id, id, name, text, n_tokens, chunker, "
                    "created_at, metadata, content_hash) VALUES (%s, %s, %s, %s, %s, %s, "
                    "extract(epoch FROM clock_timestamp()), %s, %s)",
                    (
                        self.id, doc_id, name, doc.text, doc.n_tokens, doc.chunker, Jsonb(metadata or {}),
                        content_hash(doc.text),
                    ),
                )  # fmt: skip
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT nextval('ragblend_chunks_id_seq') FROM generate_series(1, %s)", (len(chunks),)
                    )
                ]
                copy_sql = (
                    "COPY ragblend_chunks (id, collection_id, doc_id, seq, start_char, end_char, text, "
                    "token_ids, n_tokens, chunker, embedding_version, chunk_vector, embedding) "
                    "FROM STDIN (FORMAT BINARY)"
                )
                with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    copy.set_types([*_COPY_TYPES, "bytea", "vector"])
                    for chunk_id, c, vector in zip(ids, chunks, vectors, strict=True):
                        token_ids = np.asarray(c.token_ids, dtype=np.int32)
                        copy.write_row((
                            chunk_id, self.id, doc_id, c.seq, c.start, c.end, c.text, token_ids.tobytes(),
                            len(token_ids), c.chunker, c.embedding_version,
                            np.asarray(c.chunk_vector, dtype=np.float32).tobytes(), vector,
                        ))  # fmt: skip
                        stored.append(
                            StoredChunk(
                                chunk_id, doc_id, c.seq, c.start, c.end, c.text, token_ids.tolist(),
                                len(token_ids), c.chunker, c.embedding_version,
                            )
                        )  # fmt: skip
        except psycopg.errors.ForeignKeyViolation:
            raise CollectionClosed(self.name) from None
        except psycopg.errors.UniqueViolation:
            raise DocumentExists(self.name, doc_id) from None
        return stored

    def delete_document(self, doc_id: str) -> int:
        self._check_open()
        with self._pool.connection() as conn, conn.transaction():
            n = conn.execute(
                "SELECT count(*) FROM ragblend_chunks WHERE collection_id = %s AND doc_id = %s",
                (self.id, doc_id),
            ).fetchone()
            cur = conn.execute(
                "DELETE FROM ragblend_documents WHERE collection_id = %s AND id = %s", (self.id, doc_id)
            )
            if cur.rowcount == 0:
                raise DocumentNotFound(self.name, doc_id)
        return int(n[0]) if n else 0

    # --- reads ----------------------------------------------------------------------------------
    def chunk_count(self, doc_id: str) -> int | None:
        self._check_open()
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM ragblend_chunks c WHERE c.collection_id = d.collection_id "
                "AND c.doc_id = d.id) FROM ragblend_documents d WHERE d.collection_id = %s AND d.id = %s",
                (self.id, doc_id),
            ).fetchone()
        return None if row is None else int(row[0])

    def _doc_filter(self, filter: MetadataFilter | None) -> sql.Composable:
        if filter is None:
            return sql.SQL("")
        return sql.SQL(
            " AND c.doc_id IN (SELECT d.id FROM ragblend_documents d WHERE d.collection_id = {} AND {})"
        ).format(self._id, postgres_where(filter))

    def _hits(
        self, conn: psycopg.Connection[Any], ranked: sql.Composable, params: dict[str, Any]
    ) -> list[tuple[StoredChunk, str, float]]:
        """The chunks of `ranked` (a query of id, score, best first) with their documents' names."""
        query = sql.SQL(
            "WITH hits AS ({ranked}) SELECT " + _CHUNK_COLUMNS + ", d.name, h.score FROM hits h "
            "JOIN ragblend_chunks c ON c.id = h.id "
            "JOIN ragblend_documents d ON d.collection_id = c.collection_id AND d.id = c.doc_id "
            "ORDER BY h.score DESC, c.id"
        ).format(ranked=ranked)
        rows = conn.execute(query, params).fetchall()
        return [(_chunk(r[:10]), r[10], float(r[11])) for r in rows]

    def search(
        self, query: np.ndarray, k: int, filter: MetadataFilter | None = None
    ) -> list[tuple[StoredChunk, str, float]]:
        self._check_open()
        vector = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        expr = vector_expr(self.dim)
        ranked = sql.SQL(
            "SELECT c.id, -({expr} <#> %(q)s) AS score FROM ragblend_chunks c "
            "WHERE c.collection_id = {id}{filter} ORDER BY {expr} <#> %(q)s LIMIT %(k)s"
        ).format(expr=expr, id=self._id, filter=self._doc_filter(filter))
        ef_search = max(self.config.index.hnsw_ef_search, k)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(min(ef_search, 1000))))
            if filter is not None:  # keep walking the graph until k matching rows are found
                conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            return self._hits(conn, ranked, {"q": vector, "k": k})

    def keyword_search(
        self, query: str, k: int, filter: MetadataFilter | None = None
    ) -> list[tuple[StoredChunk, str, float]]:
        self._check_open()
        terms = query_terms(query)
        if not terms or k <= 0:
            return []
        # ts_rank with normalization 1 (divided by 1 + log of the chunk's length), like BM25's
        # length normalisation; the terms are word characters only, OR-ed
        ranked = sql.SQL(
            "SELECT c.id, ts_rank(c.search_text, q, 1) AS score FROM ragblend_chunks c, "
            "to_tsquery('english'::regconfig, %(terms)s) q "
            "WHERE c.collection_id = {id} AND c.search_text @@ q{filter} "
            "ORDER BY score DESC, c.id LIMIT %(k)s"
        ).format(id=self._id, filter=self._doc_filter(filter))
        with self._pool.connection() as conn:
            return self._hits(conn, ranked, {"terms": " | ".join(terms), "k": k})

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        self._check_open()
        wanted = sorted(set(doc_ids))
        if not wanted:
            return {}
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, metadata FROM ragblend_documents WHERE collection_id = %s AND id = ANY(%s)",
                (self.id, wanted),
            ).fetchall()
        return {r[0]: r[1] or {} for r in rows}

    def named(self, name: str) -> list[DocumentInfo]:
        self._check_open()
        with self._pool.connection() as conn:
            rows = conn.execute(_INFO + " AND d.name = %s ORDER BY d.created_at, d.id", (self.id, name))
            return [_info(r) for r in rows.fetchall()]

    def info(self) -> CollectionInfo:
        self._check_open()
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM ragblend_documents WHERE collection_id = %(id)s), "
                "(SELECT count(*) FROM ragblend_chunks WHERE collection_id = %(id)s), "
                "EXISTS (SELECT 1 FROM ragblend_collections WHERE id = %(id)s)",
                {"id": self.id},
            ).fetchone()
        if row is None or not row[2]:
            raise CollectionClosed(self.name)
        return CollectionInfo(
            self.name, self.config, self.embedder, self.dim, int(row[0]), int(row[1]), self.created_at
        )

    def documents(self) -> list[DocumentInfo]:
        self._check_open()
        with self._pool.connection() as conn:
            rows = conn.execute(_INFO + " ORDER BY d.created_at, d.id", (self.id,)).fetchall()
        return [_info(r) for r in rows]

    def document(self, doc_id: str) -> tuple[DocumentInfo, str, list[StoredChunk]]:
        self._check_open()
        with self._pool.connection() as conn:
            doc = conn.execute(
                "SELECT d.id, d.name, length(d.text), d.n_tokens, 0, d.chunker, d.created_at, d.metadata, "
                "d.content_hash, d.text FROM ragblend_documents d WHERE d.collection_id = %s AND d.id = %s",
                (self.id, doc_id),
            ).fetchone()
            if doc is None:
                raise DocumentNotFound(self.name, doc_id)
            rows = conn.execute(
                "SELECT " + _CHUNK_COLUMNS + " FROM ragblend_chunks c "
                "WHERE c.collection_id = %s AND c.doc_id = %s ORDER BY c.seq",
                (self.id, doc_id),
            ).fetchall()
        chunks = [_chunk(r) for r in rows]
        info = _info(doc[:9])
        return DocumentInfo(**{**vars(info), "n_chunks": len(chunks)}), doc[9], chunks
