"""/v1/collections: create, list, show and delete collections."""

from __future__ import annotations

from fastapi import APIRouter

from retrieval.collection import CollectionInfo
from retrieval.config import check_collection_name
from server.collection_scope import CollectionScope, ScopeDep
from server.errors import ApiError
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


def to_out(info: CollectionInfo, scope: CollectionScope) -> CollectionOut:
    return CollectionOut(
        name=scope.public(info.name) or info.name,
        config=info.config,
        embedder=info.embedder,
        dim=info.dim,
        documents=info.documents,
        chunks=info.chunks,
        created_at=info.created_at,
    )


@router.post("", status_code=201, response_model=CollectionOut)
async def create_collection(
    body: CreateCollectionRequest, manager: CollectionsDep, scope: ScopeDep
) -> CollectionOut:
    """Create an empty collection; 409 if the name is taken (by the caller's tenant: each tenant has
    its own names)."""
    try:
        check_collection_name(body.name)
    except ValueError as exc:
        raise ApiError(422, f"name: {exc}") from None
    return to_out(await call(manager.create, scope.storage(body.name), body.config()), scope)


@router.get("", response_model=CollectionList)
async def list_collections(manager: CollectionsDep, scope: ScopeDep) -> CollectionList:
    """The caller's tenant's collections."""
    infos = [i for i in await call(manager.list_collections) if scope.owns(i.name)]
    return CollectionList(collections=[to_out(i, scope) for i in infos])


@router.get("/{name}", response_model=CollectionDetail)
async def get_collection(name: str, manager: CollectionsDep, scope: ScopeDep) -> CollectionDetail:
    """The collection's settings and counts, and a summary of each of its documents."""
    info = await call(manager.info, scope.storage(name))
    docs = await call(manager.documents, scope.storage(name))
    summaries = [DocumentSummary(**vars(d)) for d in docs]
    return CollectionDetail(**to_out(info, scope).model_dump(), document_list=summaries)


@router.delete("/{name}", response_model=Deleted)
async def delete_collection(name: str, manager: CollectionsDep, scope: ScopeDep) -> Deleted:
    """Delete the collection and everything in it; queued ingestion jobs for it fail."""
    await call(manager.delete, scope.storage(name))
    return Deleted(deleted=name)
