"""What the retrieval layer hands out: stored chunks, document summaries, retrieval hits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored. `token_ids` are the engine tokenizer's ids of exactly `text`, tokenized
    alone with no special tokens; `text == document_text[start:end]`."""

    chunk_id: int
    doc_id: str
    seq: int
    start: int
    end: int
    text: str
    token_ids: list[int] = field(repr=False)
    n_tokens: int
    chunker: str
    embedding_version: str


@dataclass(frozen=True)
class RetrievedChunk:
    """One retrieval hit, with everything a citation needs."""

    collection: str
    chunk_id: int
    doc_id: str
    doc_name: str
    seq: int
    start: int
    end: int
    text: str
    score: float
    token_ids: list[int] = field(repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentInfo:
    doc_id: str
    name: str
    n_chars: int
    n_tokens: int
    n_chunks: int
    chunker: str
    created_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    content_hash: str | None = None  # sha256 of the text (None: stored before hashes were kept)


def content_hash(text: str) -> str:
    """The hash a document's text is stored under: re-sending the same text is recognised by it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
