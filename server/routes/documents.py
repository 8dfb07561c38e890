"""/v1/collections/{name}/documents: add documents (as a background job), show and delete them."""

from __future__ import annotations

from fastapi import APIRouter, Request

from retrieval.extract.pages import page_span
from server.collection_scope import ScopeDep
from server.deps import ServicesDep
from server.document_uploads import read_documents
from server.retrieval_schemas import (
    AcceptedDocument,
    ChunkOut,
    Deleted,
    DocumentDetail,
    DocumentSummary,
    JobAccepted,
)
from server.retrieval_service import CollectionsDep, call

router = APIRouter(prefix="/v1/collections/{name}/documents", tags=["documents"])


@router.post("", status_code=202, response_model=JobAccepted)
async def add_documents(
    name: str, request: Request, services: ServicesDep, manager: CollectionsDep, scope: ScopeDep
) -> JobAccepted:
    """Queue documents for ingestion and answer at once with the job to poll.

    Body: JSON `{"text": ..., "name": ..., "metadata": {...}}` or `{"documents": [{"text", "name",
    "metadata"}, ...]}`, or a multipart/form-data upload of files (field `files`: PDF, DOCX, HTML,
    CSV, Markdown or text, the format detected from the content) with an optional `metadata` field
    (a JSON object, for every file). A file that cannot be read (encrypted, damaged, unsupported,
    over a limit) fails alone, listed as failed with the reason, and the other files are ingested;
    when no file can be read the answer is a 4xx naming each. A named document replaces the one of
    that name; re-sending one unchanged (same text and metadata) does nothing (its job says "unchanged").
    A tenant with RAGBLEND_RETRIEVAL_MAX_JOBS_PER_TENANT jobs queued or running gets 429 with
    Retry-After, and nothing is stored.
    """
    await call(manager.collection, scope.storage(name))  # 404 before reading a large body
    await call(manager.check_queue, scope.storage(name))  # and 429 when the tenant's queue is full
    docs = await read_documents(request, services.settings)
    documents = [doc for doc, _ in docs]
    metadata = [meta for _, meta in docs]
    job = await call(manager.submit_documents, scope.storage(name), documents, metadata)
    return JobAccepted(
        job_id=job.job_id,
        collection=name,
        state=job.state,
        status_url=f"/v1/jobs/{job.job_id}",
        documents=[
            AcceptedDocument(doc_id=d.doc_id, name=d.name, state=d.state, error=d.error)
            for d in job.documents
        ],
    )


@router.get("/{doc_id}", response_model=DocumentDetail)
async def get_document(name: str, doc_id: str, manager: CollectionsDep, scope: ScopeDep) -> DocumentDetail:
    """The document's text and its chunks with their offsets (and pages, for a PDF)."""
    info, text, chunks = await call(manager.document, scope.storage(name), doc_id)
    starts = (await call(manager.page_starts, scope.storage(name), [doc_id])).get(doc_id)
    return DocumentDetail(
        **DocumentSummary(**vars(info)).model_dump(),
        text=text,
        chunks=[
            ChunkOut(
                chunk_id=c.chunk_id,
                seq=c.seq,
                start=c.start,
                end=c.end,
                n_tokens=c.n_tokens,
                text=c.text,
                pages=_pages(starts, c.start, c.end),
            )
            for c in chunks
        ],
        page_starts=None if starts is None else list(starts),
    )


def _pages(starts: tuple[int, ...] | None, start: int, end: int) -> list[int] | None:
    span = page_span(starts, start, end)
    return None if span is None else list(span)


@router.delete("/{doc_id}", response_model=Deleted)
async def delete_document(name: str, doc_id: str, manager: CollectionsDep, scope: ScopeDep) -> Deleted:
    """Remove the document and its chunks from the store and the index."""
    removed = await call(manager.delete_document, scope.storage(name), doc_id)
    return Deleted(deleted=doc_id, chunks_removed=removed)
