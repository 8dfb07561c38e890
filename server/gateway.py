"""The gateway's own state (keys, limits, metrics, tracing) and its middleware, installed on the app.

Middleware order, outermost first: request context (request id, log line, HTTP metrics), OpenAI
error shape, authentication and rate limits, then the body-size limit already on the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from cache.redis_conn import RedisConnection
from engine.events import FinishEvent
from server.api_keys import KeyRing, load_tenant_secret
from server.auth import AuthMiddleware
from server.http_metrics import ServingMetrics
from server.openai_errors import OpenAIErrorMiddleware
from server.rate_limit import RateLimiter
from server.request_context import RequestContextMiddleware
from server.services import Services
from server.shared_limits import SharedRateLimiter, SharedStreamLimiter
from server.stream_limit import StreamLimiter
from server.tracing import Tracing


@dataclass
class Gateway:
    keys: KeyRing
    limiter: RateLimiter
    streams: StreamLimiter
    metrics: ServingMetrics
    tracing: Tracing


def build_gateway(services: Services) -> Gateway:
    settings = services.settings
    secret_value = settings.tenant_secret.get_secret_value() if settings.tenant_secret else None
    # The secret file is only needed (and only written) when there are tenants to salt.
    secret = load_tenant_secret(secret_value, settings.data_dir) if settings.api_keys else b""
    limiter, streams = RateLimiter(), StreamLimiter()
    if settings.redis_url:  # replicas share one count per key
        connection = RedisConnection(settings.redis_url, timeout_s=0.25)
        limiter = SharedRateLimiter(connection)
        streams = SharedStreamLimiter(connection, slot_ttl_s=settings.request_timeout_s + 60)
    return Gateway(
        keys=KeyRing(list(settings.api_keys), secret),
        limiter=limiter,
        streams=streams,
        metrics=ServingMetrics(services.metrics, services),
        tracing=Tracing(settings.otlp_traces_endpoint),
    )


def install_gateway(app: FastAPI, services: Services) -> Gateway:
    from server.routes import embeddings, models, openai_chat, openai_completions, tokenize

    gateway = build_gateway(services)
    app.state.gateway = gateway
    app.include_router(openai_chat.router)
    app.include_router(openai_completions.router)
    app.include_router(models.router)
    app.include_router(tokenize.router)
    app.include_router(embeddings.router)
    app.add_middleware(AuthMiddleware, keys=gateway.keys, limiter=gateway.limiter)
    app.add_middleware(OpenAIErrorMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=gateway.metrics)
    return gateway


def record_finish(request: Request, final: FinishEvent) -> None:
    """Serving metrics of a generation finished on a native route (the OpenAI routes record their own)."""
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    if gateway is not None:
        route = getattr(request.scope.get("route"), "path", request.url.path)
        gateway.metrics.observe_finish(route, final)


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
