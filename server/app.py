"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from engine.base import Engine
from engine.request_queue import RequestQueue
from server.body_limit import BodyLimitMiddleware
from server.errors import install_error_handlers
from server.gateway import install_gateway
from server.retrieval_service import close_collections, open_collections
from server.routes import collections, console, documents, generate, health, jobs, metrics, retrieve
from server.services import Services
from server.settings import Settings


def preload_libraries() -> None:
    """Import transformers' entry points on the main thread before loader threads start.

    The engine and the embedder load in background threads, and transformers' lazy module is not
    safe to populate from two threads at once ("cannot import name 'AutoTokenizer'")."""
    import sentence_transformers  # noqa: F401
    import transformers

    for name in ("AutoTokenizer", "AutoModelForCausalLM", "AutoConfig", "GgufConfig"):
        getattr(transformers, name)


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. Without `engine`, the configured one loads in the background after start-up,
    so /health answers at once and /ready turns 200 when the model is loaded."""
    settings = settings or Settings()
    preload_libraries()
    services = Services(settings=settings, queue=RequestQueue(settings.queue_size), engine=engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = (
            None
            if services.engine is not None
            else asyncio.create_task(asyncio.to_thread(services.load_engine))
        )
        await open_collections(services)
        yield
        await close_collections(services)
        services.close()
        if loader is not None and not loader.done():
            loader.cancel()

    app = FastAPI(title="ragblend", version="0.1.0", lifespan=lifespan)
    app.state.services = services
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(generate.router)
    app.include_router(metrics.router)
    app.include_router(collections.router)
    app.include_router(documents.router)
    app.include_router(jobs.router)
    app.include_router(retrieve.router)
    app.include_router(console.router)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes
    )
    # Keys, rate limits, request ids, metrics, tracing and the OpenAI routes (middleware outside the limit).
    install_gateway(app, services)
    return app
