"""Liveness and readiness.

Both answer without a key and name a state by a stable reason code, never by exception text (that
goes to the log): `loading`, `load_failed` (the model did not load), `engine_dead` (the engine's
thread died or its scheduler closed; liveness fails too, so the process is restarted)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from server.deps import ServicesDep
from server.services import Services

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

_logged: set[str] = set()  # each distinct failure is logged once, not on every probe


def engine_dead(services: Services) -> bool:
    """True when a loaded engine can no longer serve; its reason is logged (once)."""
    failure = services.engine.failure() if services.engine is not None else None
    if failure is None:
        return False
    if failure not in _logged:
        _logged.add(failure)
        log.error("the engine can no longer serve: %s", failure)
    return True


@router.get("/health")
async def health(services: ServicesDep) -> JSONResponse:
    """The process is alive, and so is its engine once loaded (503 `engine_dead` when it died)."""
    if engine_dead(services):
        return JSONResponse({"status": "failed", "reason": "engine_dead"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    """The model is loaded and requests can be served."""
    if services.engine is None:
        if services.load_error is None:
            return JSONResponse({"status": "loading", "reason": "loading"}, status_code=503)
        return JSONResponse({"status": "failed", "reason": "load_failed"}, status_code=503)
    if engine_dead(services):
        return JSONResponse({"status": "failed", "reason": "engine_dead"}, status_code=503)
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
