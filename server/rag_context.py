"""What a generation answers from: inline documents, or chunks retrieved from a collection.

Shared by /generate and the OpenAI-compatible routes. With `collection`, the query is embedded,
the top_k chunks are retrieved, and each becomes one document piece of the prompt (so its KV cache,
warmed at ingestion, is found by content), in retrieval order; the answer carries their citations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pydantic import BaseModel

from retrieval.records import RetrievedChunk
from server.errors import ApiError
from server.retrieval_service import retrieve_chunks
from server.services import Services


class Citation(BaseModel):
    """A chunk the answer was given: where it comes from and where it sits in its document."""

    index: int  # position among the prompt's documents, from 0
    collection: str
    doc_id: str
    document_name: str
    chunk_id: int
    seq: int
    start: int  # character offsets in the document's text
    end: int
    score: float


@dataclass(frozen=True)
class RagContext:
    documents: list[str] | None
    citations: list[Citation] = field(default_factory=list)
    retrieve_ms: float | None = None


def citations_for(hits: list[RetrievedChunk]) -> list[Citation]:
    return [
        Citation(
            index=i,
            collection=h.collection,
            doc_id=h.doc_id,
            document_name=h.doc_name,
            chunk_id=h.chunk_id,
            seq=h.seq,
            start=h.start,
            end=h.end,
            score=round(h.score, 6),
        )
        for i, h in enumerate(hits)
    ]


async def resolve_context(
    services: Services,
    query: str,
    documents: list[str] | None,
    collection: str | None,
    top_k: int | None,
) -> RagContext:
    """The documents to answer from. `collection` and `documents` exclude each other (422); `top_k`
    needs a collection (422); an unknown collection is a 404."""
    if collection is None:
        if top_k is not None:
            raise ApiError(422, "top_k: only meaningful with a collection")
        return RagContext(documents)
    if documents:
        raise ApiError(422, "documents: give either documents or a collection, not both")
    k = top_k if top_k is not None else services.settings.retrieval_default_top_k
    started = time.perf_counter()
    hits = [h for h in await retrieve_chunks(services, collection, query, k) if h.text.strip()]
    retrieve_ms = round((time.perf_counter() - started) * 1000, 3)
    return RagContext([h.text for h in hits], citations_for(hits), retrieve_ms)
