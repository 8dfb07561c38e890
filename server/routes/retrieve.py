"""POST /v1/retrieve: the chunks of a collection that best match a query, with citations."""

from __future__ import annotations

import time

from fastapi import APIRouter

from server.collection_scope import ScopeDep
from server.deps import ServicesDep
from server.retrieval_schemas import RetrievedChunkOut, RetrieveRequest, RetrieveResponse
from server.retrieval_service import call, get_collections, retrieve_chunks

router = APIRouter(prefix="/v1", tags=["retrieve"])


@router.post("/retrieve", response_model=RetrieveResponse)
async def retrieve(body: RetrieveRequest, services: ServicesDep, scope: ScopeDep) -> RetrieveResponse:
    started = time.perf_counter()
    hits = await retrieve_chunks(
        services, body.collection, body.query, body.top_k, scope.salt, body.filter, body.retrieval
    )
    mode = body.retrieval
    if mode is None:  # the collection's own mode
        manager = get_collections(services)
        info = await call(manager.info, scope.storage(body.collection))
        mode = info.config.retrieval
    return RetrieveResponse(
        collection=body.collection,
        retrieval=mode,
        chunks=[
            RetrievedChunkOut(
                chunk_id=h.chunk_id,
                doc_id=h.doc_id,
                document_name=h.doc_name,
                seq=h.seq,
                start=h.start,
                end=h.end,
                score=h.score,
                text=h.text,
                metadata=h.metadata,
            )
            for h in hits
        ],
        retrieve_ms=round((time.perf_counter() - started) * 1000, 3),
    )
