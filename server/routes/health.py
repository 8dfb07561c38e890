"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    """The model is loaded and requests can be served."""
    if services.engine is None:
        body = {
            "status": "loading" if services.load_error is None else "failed",
            "error": services.load_error,
        }
        return JSONResponse(body, status_code=503)
    failure = services.engine.failure()
    if failure is not None:
        return JSONResponse({"status": "failed", "error": failure}, status_code=503)
    queue = {"waiting": services.queue.depth, "running": services.queue.running}
    engine = services.engine
    stats = engine.stats()
    if stats is not None:  # a batching engine queues and runs requests itself
        queue["waiting"] += stats.queue_depth
        queue["running"] += stats.batch_size + stats.prefilling
    default = engine.default_blend
    blend = {"default_mode": default.mode, "default_ratio": default.ratio, "gate": engine.blend_gate}
    return JSONResponse(
        {"status": "ready", "model": engine.model_name, "engine": engine.name, "queue": queue, "blend": blend}
    )
