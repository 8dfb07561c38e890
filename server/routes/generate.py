"""POST /generate: the native RAG endpoint (documents in the request, streamed or not)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from engine.events import FinishEvent, TokenEvent
from engine.sampling import SamplingParams
from server.auth import principal_of
from server.deps import EngineDep, ServicesDep
from server.errors import ApiError
from server.gateway import record_finish
from server.generation import collect, prepare_prompt, submit, timed_events
from server.rag_context import RagContext, resolve_context
from server.schemas import GenerateRequest, GenerateResponse, Timings, Usage, recompute_ratio
from server.settings import Settings
from server.sse import sse_event

router = APIRouter(tags=["generate"])


def check_limits(body: GenerateRequest, settings: Settings) -> int:
    """Limits that come from the settings; returns the effective max_tokens."""
    max_tokens = body.max_tokens or min(settings.default_max_tokens, settings.max_tokens_limit)
    if max_tokens > settings.max_tokens_limit:
        raise ApiError(422, f"max_tokens: {max_tokens} is above the limit of {settings.max_tokens_limit}")
    if len(body.query) > settings.max_query_chars:
        raise ApiError(422, f"query: {len(body.query)} characters, the limit is {settings.max_query_chars}")
    docs = body.documents or []
    if len(docs) > settings.max_documents:
        raise ApiError(422, f"documents: {len(docs)} given, at most {settings.max_documents} allowed")
    for i, doc in enumerate(docs):
        if not doc.strip():
            raise ApiError(422, f"documents.{i}: a document must not be empty")
        if len(doc) > settings.max_document_chars:
            raise ApiError(
                422, f"documents.{i}: {len(doc)} characters, the limit is {settings.max_document_chars}"
            )
    stops = body.stop_list()
    if len(stops) > settings.max_stop_strings or any(not s for s in stops):
        raise ApiError(422, f"stop: give 1 to {settings.max_stop_strings} non-empty strings")
    return max_tokens


def to_response(final: FinishEvent, context: RagContext) -> GenerateResponse:
    return GenerateResponse(
        text=final.text,
        finish_reason=final.finish_reason,
        usage=Usage(
            prompt_tokens=final.prompt_tokens,
            completion_tokens=final.completion_tokens,
            recompute_ratio=recompute_ratio(final.extra_usage),
            **final.extra_usage,
        ),
        timings=Timings(
            ttft_ms=final.ttft_ms,
            total_ms=final.total_ms,
            retrieve_ms=context.retrieve_ms,
            select_ms=context.select_ms,
            **final.extra_timings,
        ),
        citations=context.citations if context.citations else None,
        selection=context.selection,
    )


@router.post("/generate", response_model=GenerateResponse, response_model_exclude_none=True)
async def generate(
    body: GenerateRequest, request: Request, services: ServicesDep, engine: EngineDep
) -> GenerateResponse | StreamingResponse:
    """Answer `query` from `documents` or from the `top_k` chunks of `collection`; with `stream: true`,
    Server-Sent Events (a `citations` event first when there are any, then `token`s, then `done`)."""
    received = time.perf_counter()
    settings = services.settings
    max_tokens = check_limits(body, settings)
    salt = principal_of(request).salt
    blend = body.blend.options(engine.default_blend)
    context = await resolve_context(
        services,
        body.query,
        body.documents,
        body.collection,
        body.top_k,
        selection=body.selection,
        blend=blend,
        salt=salt,
        system=body.system,
        filter=body.filter,
        retrieval=body.retrieval,
    )
    prompt = await prepare_prompt(engine, body.query, context.documents, body.system, max_tokens)
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_list()),
    )
    # The tenant's salt (derived on the server from the API key) keeps its chunk caches its own.
    job = submit(services, engine, prompt, params, blend, salt=salt)
    if not body.stream:
        final = await collect(job, request, received, settings.request_timeout_s)
        record_finish(request, final)
        return to_response(final, context)

    async def stream() -> AsyncIterator[bytes]:
        if context.citations:
            yield sse_event("citations", {"citations": [c.model_dump() for c in context.citations]})
        try:
            async for event in timed_events(job, received, settings.request_timeout_s):
                if isinstance(event, TokenEvent):
                    yield sse_event("token", {"text": event.text})
                else:
                    record_finish(request, event)
                    yield sse_event("done", to_response(event, context).model_dump(exclude_none=True))
        except ApiError as exc:
            yield sse_event("error", {"type": exc.kind, "message": exc.message})
        except Exception as exc:
            yield sse_event("error", {"type": "internal_error", "message": type(exc).__name__})

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
