"""The gateway's side of retrieval: opening the collection manager, calling it off the event loop.

Manager calls block (the collection store, FAISS, the embedding model), so routes run them in the thread pool;
retrieval errors become ApiErrors with the status they name. `retrieve_chunks` is what /generate
calls to fetch chunks from a collection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, ParamSpec, TypeVar, cast

from fastapi import Depends
from starlette.concurrency import run_in_threadpool

from retrieval.collection_store import CollectionStore
from retrieval.collections import CollectionManager
from retrieval.config import RetrievalMode
from retrieval.errors import InvalidRequest, ModelUnavailable, QueueFull, RetrievalError
from retrieval.lm import LanguageModel
from retrieval.metadata import MetadataFilter
from retrieval.records import RetrievedChunk
from server.collection_scope import CollectionScope
from server.deps import ServicesDep
from server.errors import ApiError
from server.kv_warmup import chunk_warmup_hook
from server.services import Services
from server.settings import Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def _lm_provider(services: Services) -> Callable[[], LanguageModel | None]:
    def provide() -> LanguageModel | None:
        if services.load_error is not None:
            raise ModelUnavailable(f"the model failed to load: {services.load_error}")
        return cast(LanguageModel | None, services.engine)

    return provide


def open_store(settings: Settings) -> CollectionStore:
    """Postgres when a database URL is set, else the embedded store in the data dir (StoreInUse when
    another process holds it)."""
    if settings.database_url is not None:
        from retrieval.pg_store import PostgresCollectionStore

        url = settings.database_url.get_secret_value()
        return PostgresCollectionStore(url, pool_size=settings.database_pool_size)
    from retrieval.sqlite_store import SqliteCollectionStore

    return SqliteCollectionStore(settings.data_dir / "collections")


async def open_collections(services: Services) -> CollectionManager:
    """Open the collection store, start this process's ingestion worker, and warm the embedding model
    in the background."""
    s = services.settings
    store = await asyncio.to_thread(open_store, s)
    manager = await asyncio.to_thread(
        CollectionManager,
        store,
        _lm_provider(services),
        embedder_dir=s.retrieval_embedder_dir,
        max_document_chars=s.retrieval_max_document_chars,
        max_documents_per_job=s.retrieval_max_documents_per_request,
        lm_wait_s=s.retrieval_lm_wait_s,
        job_history=s.retrieval_job_history,
        job_lease_s=s.retrieval_job_lease_s,
        job_poll_s=s.retrieval_job_poll_s,
        max_jobs_per_tenant=s.retrieval_max_jobs_per_tenant,
        queue_retry_after_s=s.retrieval_queue_retry_after_s,
    )
    services.collections = manager
    manager.on_chunks_ingested = chunk_warmup_hook(services)

    def warm() -> None:
        try:
            manager.embedder("query")
        except Exception:  # reported again, with its reason, by the first request that needs it
            log.exception("embedding model failed to load")

    # a daemon thread: shutting down must not wait for a model that is still loading
    threading.Thread(target=warm, name="embedder-warm-up", daemon=True).start()
    return manager


async def close_collections(services: Services) -> None:
    if services.collections is not None:
        await asyncio.to_thread(services.collections.close)
        services.collections = None


def get_collections(services: ServicesDep) -> CollectionManager:
    if services.collections is None:
        raise ApiError(503, "collections are not open yet", "unavailable", headers={"Retry-After": "2"})
    return services.collections


CollectionsDep = Annotated[CollectionManager, Depends(get_collections)]


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking manager call in the thread pool, mapping retrieval errors to API errors."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except QueueFull as exc:
        raise ApiError(
            exc.status, exc.message, exc.kind, headers={"Retry-After": str(exc.retry_after_s)},
            extra={"limit": "retrieval_max_jobs_per_tenant", "max": exc.limit, "unfinished": exc.unfinished},
        ) from exc  # fmt: skip
    except RetrievalError as exc:
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        raise ApiError(exc.status, exc.message, exc.kind, headers=headers) from exc


async def retrieve_chunks(
    services: Services,
    collection: str,
    query: str,
    top_k: int,
    salt: str = "",
    filter: dict[str, Any] | None = None,
    mode: RetrievalMode | None = None,
) -> list[RetrievedChunk]:
    """The `top_k` chunks of the caller's `collection` for `query`, best first (the tenant's `salt`
    scopes the name), among the documents whose metadata pass `filter`, by retrieval `mode` (None:
    the collection's); ApiError 404/422/503 on bad input."""
    settings = services.settings
    if not 1 <= top_k <= settings.retrieval_max_top_k:
        raise ApiError(422, f"top_k: {top_k} is outside 1..{settings.retrieval_max_top_k}")
    if len(query) > settings.max_query_chars:
        raise ApiError(422, f"query: {len(query)} characters, the limit is {settings.max_query_chars}")
    try:
        parsed = MetadataFilter.parse(filter)
    except InvalidRequest as exc:
        raise ApiError(422, exc.message) from None
    manager = get_collections(services)
    stored = CollectionScope(salt).storage(collection)
    hits = await call(manager.retrieve, stored, query, top_k, parsed, mode)
    return [replace(h, collection=collection) for h in hits]
