"""A second listener that serves `/metrics` alone, without keys, for a scraper inside the cluster.

With API keys on, `/metrics` on the API port needs a key like every other route. Set
RAGBLEND_METRICS_PORT and this process also answers `GET /metrics` on that port (nothing else: every
other path is a 404), so Prometheus can scrape a port that the network policy keeps internal while the
API port keeps requiring keys.
"""

from __future__ import annotations

import logging
import threading

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = logging.getLogger(__name__)


def metrics_app(registry: CollectorRegistry) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])


def start_metrics_listener(registry: CollectorRegistry, host: str, port: int) -> uvicorn.Server:
    """Serve `registry` on host:port from a daemon thread; returns the server (``should_exit``)."""
    config = uvicorn.Config(metrics_app(registry), host=host, port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="ragblend-metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics (no key)", host, port)
    return server
