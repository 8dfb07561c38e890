"""GET /v1/models: the one model this server serves, in OpenAI's list shape."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from engine.base import Engine
from server.deps import EngineDep
from server.errors import ApiError

router = APIRouter(tags=["openai"])

_STARTED = int(time.time())


def served_model(engine: Engine, requested: str | None) -> str:
    """The model id to answer with; 404 when a request names another one."""
    if requested and requested != engine.model_name:
        raise ApiError(
            404,
            f"model {requested!r} does not exist here; this server serves {engine.model_name!r} "
            "(see GET /v1/models)",
            "model_not_found",
        )
    return engine.model_name


def _card(engine: Engine) -> dict[str, Any]:
    return {
        "id": engine.model_name,
        "object": "model",
        "created": _STARTED,
        "owned_by": "ragblend",
        "max_model_len": engine.max_context,
        # vLLM's card fields, which its clients read (`vllm bench serve` without --model)
        "root": engine.model_name,
        "parent": None,
    }


@router.get("/v1/models")
async def list_models(engine: EngineDep) -> dict[str, Any]:
    return {"object": "list", "data": [_card(engine)]}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, engine: EngineDep) -> dict[str, Any]:
    served_model(engine, model_id)
    return _card(engine)
