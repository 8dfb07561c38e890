"""Serving one OpenAI-style generation: submit for the caller's tenant, then answer whole or as a stream
of `data:` chunks ending in `data: [DONE]`, recording metrics and spans on the way."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from engine.base import Engine
from engine.blend.options import BlendOptions
from engine.events import FinishEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SamplingParams
from server.auth import principal_of
from server.errors import ApiError
from server.gateway import Gateway
from server.generation import collect, submit, timed_events
from server.openai_errors import openai_error
from server.openai_responses import (
    ResponseHeader,
    citations_json,
    finish_reason,
    full_response,
    sse_data,
    stream_chunk,
    text_delta,
    usage_chunk,
)
from server.rag_context import RagContext
from server.services import Services
from server.tracing import PhaseTimes


@dataclass(frozen=True)
class Received:
    """When the request arrived: a monotonic clock for durations, the wall clock for spans."""

    perf: float
    wall_ns: int

    @staticmethod
    def now() -> Received:
        return Received(time.perf_counter(), time.time_ns())


@dataclass(frozen=True)
class OpenAIGeneration:
    head: ResponseHeader
    endpoint: str
    prompt: Prompt
    params: SamplingParams
    blend: BlendOptions | None
    context: RagContext
    stream: bool
    include_usage: bool


def _record(
    gateway: Gateway, spec: OpenAIGeneration, final: FinishEvent, span: Any, at: Received, gaps_observed: bool
) -> None:
    gateway.metrics.observe_finish(spec.endpoint, final, gaps_observed)
    span.set_attribute("ragblend.prompt_tokens", final.prompt_tokens)
    span.set_attribute("ragblend.completion_tokens", final.completion_tokens)
    span.set_attribute("ragblend.cached_tokens", final.extra_usage.get("cached_tokens", 0))
    times = PhaseTimes(
        retrieve_ms=spec.context.retrieve_ms,
        select_ms=None,
        kv_fetch_ms=final.extra_timings.get("kv_fetch_ms"),
        prefill_ms=final.extra_timings.get("prefill_ms"),
        ttft_ms=final.ttft_ms,
        total_ms=final.total_ms,
    )
    gateway.tracing.record_phases(span, at.wall_ns, times)


async def respond(
    request: Request,
    services: Services,
    gateway: Gateway,
    engine: Engine,
    spec: OpenAIGeneration,
    at: Received,
) -> dict[str, Any] | StreamingResponse:
    principal = principal_of(request)
    slot = gateway.streams.acquire(principal) if spec.stream else None
    try:
        job = submit(services, engine, spec.prompt, spec.params, spec.blend, salt=principal.salt)
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    timeout_s = services.settings.request_timeout_s
    attributes = {"ragblend.endpoint": spec.endpoint, "ragblend.tenant": principal.tenant}
    span_args = (spec.endpoint, request.headers, attributes, at.wall_ns)
    if not spec.stream:
        with gateway.tracing.request_span(*span_args) as span:
            final = await collect(job, request, at.perf, timeout_s)
            _record(gateway, spec, final, span, at, gaps_observed=False)
        return full_response(spec.head, final, spec.context.citations, spec.context.retrieve_ms)

    async def body() -> AsyncIterator[bytes]:
        try:
            with gateway.tracing.request_span(*span_args) as span:
                first = stream_chunk(
                    spec.head, {"role": "assistant", "content": ""} if spec.head.kind == "chat" else {}
                )
                if spec.context.citations:
                    first["citations"] = citations_json(spec.context.citations)
                yield sse_data(first)
                async for chunk in _events(gateway, spec, job, at, timeout_s, span):
                    yield chunk
                yield sse_data("[DONE]")
        finally:
            if slot is not None:
                slot.release()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


async def _events(
    gateway: Gateway, spec: OpenAIGeneration, job: Any, at: Received, timeout_s: float, span: Any
) -> AsyncIterator[bytes]:
    """Token chunks, the finishing chunk and (when asked) the usage chunk; errors as one error chunk."""
    last_token: float | None = None
    try:
        async for event in timed_events(job, at.perf, timeout_s):
            if isinstance(event, TokenEvent):
                now = time.perf_counter()
                if last_token is not None:
                    gateway.metrics.inter_token.labels(spec.endpoint).observe(now - last_token)
                last_token = now
                if event.text:
                    yield sse_data(stream_chunk(spec.head, text_delta(spec.head, event.text)))
            elif isinstance(event, FinishEvent):
                yield sse_data(stream_chunk(spec.head, {}, finish_reason(event)))
                if spec.include_usage:
                    yield sse_data(usage_chunk(spec.head, event))
                _record(gateway, spec, event, span, at, gaps_observed=True)
    except ApiError as exc:
        yield sse_data(openai_error(exc.status, exc.message, exc.kind))
    except Exception as exc:
        yield sse_data(openai_error(500, f"internal error: {type(exc).__name__}", "internal_error"))
