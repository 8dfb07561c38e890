"""POST /v1/completions: OpenAI-compatible raw text completion (no chat template, no documents)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from engine.sampling import SamplingParams
from server.deps import EngineDep, ServicesDep
from server.errors import ApiError
from server.gateway import GatewayDep
from server.openai_context import check_sampling
from server.openai_generation import OpenAIGeneration, Received, respond
from server.openai_prompts import completion_prompt
from server.openai_responses import ResponseHeader
from server.openai_schemas import CompletionRequest
from server.rag_context import RagContext
from server.request_context import request_id_of
from server.routes.models import served_model

router = APIRouter(tags=["openai"])


@router.post("/v1/completions", response_model=None)
async def completions(
    body: CompletionRequest,
    request: Request,
    services: ServicesDep,
    engine: EngineDep,
    gateway: GatewayDep,
) -> dict[str, Any] | StreamingResponse:
    """Continue `prompt`, whole or streamed (`data:` chunks, then `data: [DONE]`)."""
    at = Received.now()
    model = served_model(engine, body.model)
    problem = body.unsupported()
    text = body.prompt_text()
    if problem or text is None:
        raise ApiError(400, problem or "prompt: give one prompt", "unsupported_parameter")
    max_tokens = check_sampling(body.max_tokens, body.stop_list(), services.settings)
    prompt = await completion_prompt(engine, text, max_tokens)
    spec = OpenAIGeneration(
        head=ResponseHeader.new("text", request_id_of(request), model),
        endpoint="/v1/completions",
        prompt=prompt,
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=tuple(body.stop_list()),
        ),
        blend=None,
        context=RagContext(None),
        stream=body.stream,
        include_usage=body.include_usage(),
    )
    return await respond(request, services, gateway, engine, spec, at)
