"""Request and response bodies of the collection, document, job and retrieve endpoints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from retrieval.config import (
    DEFAULT_RETRIEVAL,
    ChunkerConfig,
    CollectionConfig,
    EmbeddingConfig,
    IndexConfig,
    RetrievalMode,
)

METADATA_HELP = "a flat JSON object: string, number or boolean values (see README, Metadata)"
FILTER_HELP = (
    'only chunks of documents whose metadata match: {"field": value}, {"field": {"in": [...]}}, '
    '{"field": {"gte": 1, "lt": 5}}; all conditions must hold, an unknown field matches nothing'
)
RETRIEVAL_HELP = "dense (embeddings), keyword (BM25 full text) or hybrid (both, rank-fused)"


class CreateCollectionRequest(BaseModel):
    """POST /v1/collections. Unset settings take the defaults (the benchmark's best combination)."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(description="1-64 characters from a-z, 0-9, '-' and '_'")
    chunker: ChunkerConfig = Field(default_factory=ChunkerConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalMode = Field(DEFAULT_RETRIEVAL, description=RETRIEVAL_HELP + "; overridable")

    def config(self) -> CollectionConfig:
        return CollectionConfig(
            chunker=self.chunker, embedding=self.embedding, index=self.index, retrieval=self.retrieval
        )


class DocumentSummary(BaseModel):
    doc_id: str
    name: str
    n_chars: int
    n_tokens: int
    n_chunks: int
    chunker: str
    created_at: float
    metadata: dict[str, Any] = Field(default_factory=dict)
    content_hash: str | None = Field(None, description="sha256 of the text")


class CollectionOut(BaseModel):
    name: str
    config: CollectionConfig
    embedder: str
    dim: int
    documents: int
    chunks: int
    created_at: float


class CollectionDetail(CollectionOut):
    document_list: list[DocumentSummary]


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class Deleted(BaseModel):
    deleted: str
    chunks_removed: int | None = None


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    name: StrictStr | None = Field(None, max_length=256)
    metadata: dict[str, Any] | None = Field(None, description=METADATA_HELP)


class AddDocumentsRequest(BaseModel):
    """JSON form of POST /v1/collections/{name}/documents: one `text`, or a `documents` list."""

    model_config = ConfigDict(extra="forbid")

    text: StrictStr | None = None
    name: StrictStr | None = Field(None, max_length=256)
    metadata: dict[str, Any] | None = Field(None, description=METADATA_HELP)
    documents: list[DocumentIn] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AddDocumentsRequest:
        if (self.text is None) == (self.documents is None):
            raise ValueError("give either `text` (with an optional `name`) or `documents`, not both")
        if self.documents is not None and self.metadata is not None:
            raise ValueError("metadata: with `documents`, give each document its own `metadata`")
        return self

    def pairs(self) -> list[tuple[str, str]]:
        if self.text is not None:
            return [(self.name or "", self.text)]
        return [(d.name or "", d.text) for d in self.documents or []]

    def metadata_list(self) -> list[tuple[str, dict[str, Any] | None]]:
        """(where, metadata) of each document, in order: `where` names it in error messages."""
        if self.text is not None:
            return [("metadata", self.metadata)]
        return [(f"documents.{i}.metadata", d.metadata) for i, d in enumerate(self.documents or [])]


class AcceptedDocument(BaseModel):
    doc_id: str
    name: str
    state: str = Field(description='pending, or "unchanged" when this text and metadata are stored already')


class JobAccepted(BaseModel):
    job_id: str
    collection: str
    state: str
    status_url: str
    documents: list[AcceptedDocument]


class JobDocument(BaseModel):
    doc_id: str
    name: str
    state: str = Field(description="pending, running, ingested, unchanged (already stored) or failed")
    chunks: int
    error: str | None
    metadata: dict[str, Any] = Field(default_factory=dict)


class JobOut(BaseModel):
    job_id: str
    collection: str
    state: str = Field(description="queued, running, succeeded or failed")
    stage: str
    progress: float = Field(description="0..1")
    documents: list[JobDocument]
    error: str | None
    warnings: list[str]
    created_at: float
    started_at: float | None
    finished_at: float | None


class ChunkOut(BaseModel):
    chunk_id: int
    seq: int
    start: int
    end: int
    n_tokens: int
    text: str


class DocumentDetail(DocumentSummary):
    text: str
    chunks: list[ChunkOut]


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(min_length=1)
    collection: StrictStr = Field(min_length=1)
    top_k: int = Field(5, ge=1, description="at most RAGBLEND_RETRIEVAL_MAX_TOP_K")
    filter: dict[str, Any] | None = Field(None, description=FILTER_HELP)
    retrieval: RetrievalMode | None = Field(None, description=RETRIEVAL_HELP + "; default: the collection's")


class RetrievedChunkOut(BaseModel):
    """A hit and its citation: the document, the chunk, and its character offsets in the document."""

    chunk_id: int
    doc_id: str
    document_name: str
    seq: int
    start: int
    end: int
    score: float
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict, description="the document's metadata")


class RetrieveResponse(BaseModel):
    collection: str
    retrieval: RetrievalMode
    chunks: list[RetrievedChunkOut]
    retrieve_ms: float
