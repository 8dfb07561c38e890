"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.deps import ServicesDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    """Counters and histograms of this process (chunk-KV store per tier, so far)."""
    return Response(generate_latest(services.metrics), media_type=CONTENT_TYPE_LATEST)
