"""Annotated dependencies for the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from engine.base import Engine
from server.errors import ApiError
from server.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_engine(services: Annotated[Services, Depends(get_services)]) -> Engine:
    if services.engine is None:
        # the load's exception is in the log; clients get no raw exception text
        reason = "the model failed to load" if services.load_error else "the model is still loading"
        raise ApiError(503, f"not ready: {reason}", "unavailable", headers={"Retry-After": "5"})
    failure = services.engine.failure()
    if failure is not None:  # e.g. the vLLM engine process died: refuse at once, never hang
        raise ApiError(503, f"not ready: {failure}", "unavailable", headers={"Retry-After": "5"})
    return services.engine


ServicesDep = Annotated[Services, Depends(get_services)]
EngineDep = Annotated[Engine, Depends(get_engine)]
