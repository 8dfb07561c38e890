"""POST /v1/completions: OpenAI-compatible raw text completion (no chat template), optionally after
`documents` blended as `blend` says; `echo` with `max_tokens: 0` scores the prompt instead, with a
generation it repeats the prompt before the generated text (server/openai_echo.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from engine.base import Engine
from engine.blend.options import BlendOptions
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from server.auth import principal_of
from server.deps import EngineDep, ServicesDep
from server.errors import ApiError
from server.gateway import GatewayDep
from server.openai_context import check_documents, check_sampling
from server.openai_echo import Echo, score_prompt
from server.openai_generation import OpenAIGeneration, Received, respond
from server.openai_logprobs import TextLogprobs, TokenTexts
from server.openai_prompts import completion_prompt, engine_tokenizer
from server.openai_responses import ResponseHeader, sse_data, stream_chunk
from server.openai_schemas import CompletionRequest
from server.rag_context import RagContext
from server.request_context import request_id_of
from server.routes.models import served_model
from server.schemas import BlendRequest
from server.services import Services

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
    check_documents(body.documents, services.settings)
    blend_request = body.blend or (BlendRequest() if body.documents else None)
    blend = blend_request.options(engine.default_blend) if blend_request is not None else None
    head = ResponseHeader.new("text", request_id_of(request), model)
    if body.scoring:
        prompt = await completion_prompt(engine, text, 0, body.documents)
        return await _score(services, engine, request, head, prompt, blend, body)
    max_tokens = check_sampling(body.max_tokens, body.stop_list(), services.settings)
    prompt = await completion_prompt(engine, text, max_tokens, body.documents)
    texts = TokenTexts(engine_tokenizer(engine)) if body.logprobs is not None or body.echo else None
    echo = None
    if body.echo and texts is not None:
        salt, timeout_s = principal_of(request).salt, services.settings.request_timeout_s
        scored = (blend, salt, body.logprobs, timeout_s) if body.logprobs is not None else None
        echo = await Echo.of(engine, prompt, texts, scored)
    spec = OpenAIGeneration(
        head=head,
        endpoint="/v1/completions",
        prompt=prompt,
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=tuple(body.stop_list()),
            ignore_eos=body.ignore_eos,
            logprobs=body.logprobs,
        ),
        blend=blend,
        context=RagContext(None),
        stream=body.stream,
        include_usage=body.include_usage(),
        n=body.n,
        token_texts=texts if body.logprobs is not None else None,
        echo=echo,
    )
    return await respond(request, services, gateway, engine, spec, at)


async def _score(
    services: Services,
    engine: Engine,
    request: Request,
    head: ResponseHeader,
    prompt: Prompt,
    blend: BlendOptions | None,
    body: CompletionRequest,
) -> dict[str, Any] | StreamingResponse:
    """`echo` with `max_tokens: 0`: the prompt itself as the choice's text, with the log-probability
    of each of its tokens (null for the first, and under a blend for the cached pieces' tokens)."""
    salt = principal_of(request).salt
    top = body.logprobs or 0
    scored = await score_prompt(engine, prompt, blend, salt, top, services.settings.request_timeout_s)
    texts = TokenTexts(engine_tokenizer(engine))
    ids = prompt.ids
    logprobs = TextLogprobs(texts).block(ids, scored.logprobs) if body.logprobs is not None else None
    echoed = "".join(texts.of(ids))
    usage = {
        "prompt_tokens": len(ids),
        "completion_tokens": 0,
        "total_tokens": len(ids),
        "prompt_tokens_details": {"cached_tokens": scored.extra_usage.get("cached_tokens", 0)},
        "recomputed_tokens": scored.extra_usage.get("recomputed_tokens", 0),
    }
    choice = {"index": 0, "text": echoed, "finish_reason": "length", "logprobs": logprobs}
    if not body.stream:
        return {
            **head.base(chunk=False),
            "choices": [choice],
            "usage": usage,
            "timings": scored.extra_timings,
        }

    async def chunks() -> Any:
        yield sse_data(stream_chunk(head, {"text": echoed}, "length", logprobs=logprobs))
        if body.include_usage():
            yield sse_data({**head.base(chunk=True), "choices": [], "usage": usage})
        yield sse_data("[DONE]")

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(chunks(), media_type="text/event-stream", headers=headers)
