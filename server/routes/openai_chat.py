"""POST /v1/chat/completions: OpenAI-compatible chat, a RAG answer when documents or a collection
are given (extra body fields `documents`, `collection`, `top_k`, `blend`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from engine.sampling import SamplingParams
from server.auth import principal_of
from server.deps import EngineDep, ServicesDep
from server.errors import ApiError
from server.gateway import GatewayDep
from server.openai_context import chat_context, check_sampling
from server.openai_generation import OpenAIGeneration, Received, respond
from server.openai_logprobs import TokenTexts
from server.openai_prompts import chat_messages, chat_prompt, check_tools, engine_tokenizer
from server.openai_responses import ResponseHeader
from server.openai_schemas import ChatCompletionRequest
from server.request_context import request_id_of
from server.routes.models import served_model
from server.schemas import BlendRequest

router = APIRouter(tags=["openai"])


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    services: ServicesDep,
    engine: EngineDep,
    gateway: GatewayDep,
) -> dict[str, Any] | StreamingResponse:
    """Chat completion, whole or streamed (`data:` chunks, then `data: [DONE]`). With RAG options
    the first stream chunk carries `citations`."""
    at = Received.now()
    model = served_model(engine, body.model)
    problem = body.unsupported()
    if problem:
        raise ApiError(400, problem, "unsupported_parameter")
    max_tokens = check_sampling(body.requested_max_tokens(), body.stop_list(), services.settings)
    tools = body.offered_tools()
    check_tools(engine, tools, body.messages)
    messages = chat_messages(body.messages)
    context = await chat_context(services, body, messages[-1].content, principal_of(request).salt)
    prompt = await chat_prompt(engine, messages, context.documents, max_tokens, tools)
    blend = body.blend or (BlendRequest() if context.documents else None)
    spec = OpenAIGeneration(
        head=ResponseHeader.new("chat", request_id_of(request), model),
        endpoint="/v1/chat/completions",
        prompt=prompt,
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=tuple(body.stop_list()),
            ignore_eos=body.ignore_eos,
            logprobs=body.logprob_count(),
        ),
        blend=blend.options() if blend is not None else None,
        context=context,
        stream=body.stream,
        include_usage=body.include_usage(),
        n=body.n,
        token_texts=TokenTexts(engine_tokenizer(engine)) if body.logprobs else None,
        tools=tools is not None,
    )
    return await respond(request, services, gateway, engine, spec, at)
