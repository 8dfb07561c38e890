"""/v1/collections: create, list, show and delete collections."""

from __future__ import annotations

from fastapi import APIRouter

from retrieval.collection import CollectionInfo
from server.retrieval_schemas import (
    CollectionDetail,
    CollectionList,
    CollectionOut,
    CreateCollectionRequest,
    Deleted,
    DocumentSummary,
)
from server.retrieval_service import CollectionsDep, call

router = APIRouter(prefix="/v1/collections", tags=["collections"])


def to_out(info: CollectionInfo) -> CollectionOut:
    return CollectionOut(
        name=info.name,
        config=info.config,
        embedder=info.embedder,
        dim=info.dim,
        documents=info.documents,
        chunks=info.chunks,
        created_at=info.created_at,
    )


@router.post("", status_code=201, response_model=CollectionOut)
async def create_collection(body: CreateCollectionRequest, manager: CollectionsDep) -> CollectionOut:
    """Create an empty collection; 409 if the name is taken."""
    return to_out(await call(manager.create, body.name, body.config()))


@router.get("", response_model=CollectionList)
async def list_collections(manager: CollectionsDep) -> CollectionList:
    return CollectionList(collections=[to_out(i) for i in await call(manager.list_collections)])


@router.get("/{name}", response_model=CollectionDetail)
async def get_collection(name: str, manager: CollectionsDep) -> CollectionDetail:
    """The collection's settings and counts, and a summary of each of its documents."""
    info = await call(manager.info, name)
    docs = await call(manager.documents, name)
    summaries = [DocumentSummary(**vars(d)) for d in docs]
    return CollectionDetail(**to_out(info).model_dump(), document_list=summaries)


@router.delete("/{name}", response_model=Deleted)
async def delete_collection(name: str, manager: CollectionsDep) -> Deleted:
    """Delete the collection and everything in it; queued ingestion jobs for it fail."""
    await call(manager.delete, name)
    return Deleted(deleted=name)
