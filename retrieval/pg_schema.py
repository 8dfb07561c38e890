"""The Postgres tables of the shared collection store (pgvector for the vectors).

Every table is prefixed `ragblend_`, so the store can live in a database that holds other things.
Vectors are stored without a fixed dimension; each collection gets its own HNSW index (inner product)
over its rows only (a partial index cast to the collection's dimension), so a search never wades
through other tenants' vectors and a collection's graph is as exact as if it were alone.

Documents carry a JSONB `metadata` object (GIN-indexed for containment, which filters use) and the
sha256 `content_hash` of their text; chunks a generated `search_text` tsvector (English stemming)
for keyword search. Columns added after the first release are added to older databases here.
"""

from __future__ import annotations

from psycopg import Connection, sql

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS ragblend_collections (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, config JSONB NOT NULL, embedder TEXT NOT NULL,
    dim INTEGER NOT NULL, created_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS ragblend_documents (
    collection_id BIGINT NOT NULL REFERENCES ragblend_collections(id) ON DELETE CASCADE,
    id TEXT NOT NULL, name TEXT NOT NULL, text TEXT NOT NULL, n_tokens INTEGER NOT NULL,
    chunker TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (collection_id, id));
CREATE TABLE IF NOT EXISTS ragblend_chunks (
    id BIGSERIAL PRIMARY KEY, collection_id BIGINT NOT NULL, doc_id TEXT NOT NULL,
    seq INTEGER NOT NULL, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, text TEXT NOT NULL,
    token_ids BYTEA NOT NULL, n_tokens INTEGER NOT NULL, chunker TEXT NOT NULL,
    embedding_version TEXT NOT NULL, chunk_vector BYTEA NOT NULL, embedding VECTOR NOT NULL,
    FOREIGN KEY (collection_id, doc_id) REFERENCES ragblend_documents(collection_id, id) ON DELETE CASCADE);
ALTER TABLE ragblend_documents ADD COLUMN IF NOT EXISTS page_starts INTEGER[];
CREATE INDEX IF NOT EXISTS ragblend_chunks_by_doc ON ragblend_chunks(collection_id, doc_id, seq);
ALTER TABLE ragblend_documents ADD COLUMN IF NOT EXISTS metadata JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE ragblend_documents ADD COLUMN IF NOT EXISTS content_hash TEXT;
CREATE INDEX IF NOT EXISTS ragblend_documents_by_name ON ragblend_documents(collection_id, name);
CREATE INDEX IF NOT EXISTS ragblend_documents_metadata ON ragblend_documents
    USING gin (metadata jsonb_path_ops);
ALTER TABLE ragblend_chunks ADD COLUMN IF NOT EXISTS search_text TSVECTOR
    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED;
CREATE INDEX IF NOT EXISTS ragblend_chunks_search_text ON ragblend_chunks
    USING gin (search_text);
CREATE TABLE IF NOT EXISTS ragblend_jobs (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, state TEXT NOT NULL, stage TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL, documents JSONB NOT NULL, error TEXT, warnings JSONB NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,
    worker TEXT, lease_until TIMESTAMPTZ, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS ragblend_jobs_unfinished ON ragblend_jobs(created_at, id)
    WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS ragblend_jobs_finished ON ragblend_jobs(finished_at)
    WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS ragblend_job_turns (owner TEXT PRIMARY KEY, turn BIGINT NOT NULL);
CREATE SEQUENCE IF NOT EXISTS ragblend_job_turn;
CREATE TABLE IF NOT EXISTS ragblend_job_texts (
    job_id TEXT NOT NULL REFERENCES ragblend_jobs(id) ON DELETE CASCADE, doc_id TEXT NOT NULL,
    text TEXT NOT NULL, PRIMARY KEY (job_id, doc_id));
"""
# any constant: replicas starting together create the schema one at a time
_SCHEMA_LOCK = 7_300_190_019


def create_schema(conn: Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)


def index_name(collection_id: int) -> sql.Identifier:
    return sql.Identifier(f"ragblend_chunks_hnsw_{collection_id}")


def vector_expr(dim: int) -> sql.Composed:
    """The indexed expression: the stored vector at the collection's dimension."""
    return sql.SQL("(embedding::vector({}))").format(sql.Literal(dim))


def create_index(conn: Connection, collection_id: int, dim: int, m: int) -> None:
    m = min(m, 100)  # pgvector's limit; it also wants ef_construction >= 2 m
    conn.execute(
        sql.SQL(
            "CREATE INDEX {} ON ragblend_chunks USING hnsw ({} vector_ip_ops) "
            "WITH (m = {}, ef_construction = {}) WHERE collection_id = {}"
        ).format(
            index_name(collection_id),
            vector_expr(dim),
            sql.Literal(m),
            sql.Literal(max(64, 2 * m)),
            sql.Literal(collection_id),
        )
    )
