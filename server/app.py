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
from server.routes import generate, health
from server.services import Services
from server.settings import Settings


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. Without `engine`, the configured one loads in the background after start-up,
    so /health answers at once and /ready turns 200 when the model is loaded."""
    settings = settings or Settings()
    services = Services(settings=settings, queue=RequestQueue(settings.queue_size), engine=engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = (
            None
            if services.engine is not None
            else asyncio.create_task(asyncio.to_thread(services.load_engine))
        )
        yield
        services.queue.close()
        if loader is not None and not loader.done():
            loader.cancel()

    app = FastAPI(title="ragblend", version="0.1.0", lifespan=lifespan)
    app.state.services = services
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(generate.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
