"""Serving one OpenAI-style generation: submit for the caller's tenant, then answer whole or as a stream
of `data:` chunks ending in `data: [DONE]`, recording metrics and spans on the way.

`n` > 1 submits n sequences of the same prompt (seeds `seed`, `seed + 1`, ... when a seed is given)
through `Engine.submit_jobs`: a batching engine prefills the prompt once for all of them and decodes
them side by side. A stream interleaves their chunks, each with its choice's index.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from engine.base import Engine
from engine.blend.options import BlendOptions
from engine.events import FinishEvent, TokenEvent
from engine.prompt import Prompt
from engine.sampling import SEED_MAX, SamplingParams
from server.auth import principal_of
from server.errors import ApiError
from server.gateway import Gateway
from server.generation import collect_all, merged_events, submit_many
from server.openai_echo import Echo
from server.openai_errors import openai_error
from server.openai_logprobs import TextLogprobs, TokenTexts, chat_logprobs
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
from server.tool_calls import ToolStream
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
    n: int = 1
    token_texts: TokenTexts | None = None  # set when log-probabilities are asked for
    tools: bool = False  # tools were offered: tool calls are parsed from the output
    echo: Echo | None = None  # completions' `echo`: each choice repeats the prompt first

    def choice_params(self) -> list[SamplingParams]:
        """The sampling parameters of each of the n sequences: distinct seeds when one is given."""
        seed = self.params.seed
        if self.n == 1 or seed is None:
            return [self.params] * self.n
        return [replace(self.params, seed=(seed + i) % (SEED_MAX + 1)) for i in range(self.n)]


def _record(
    gateway: Gateway,
    spec: OpenAIGeneration,
    final: FinishEvent,
    span: Any,
    at: Received,
    gaps_observed: bool,
    first: bool,
) -> None:
    """Metrics and span of one finished sequence; the prompt is counted with the `first` only."""
    gateway.metrics.observe_finish(spec.endpoint, final, gaps_observed, prompt=first)
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
        jobs = submit_many(services, engine, spec.prompt, spec.choice_params(), spec.blend, principal.salt)
    except BaseException:
        if slot is not None:
            slot.release()
        raise
    timeout_s = services.settings.request_timeout_s
    attributes = {"ragblend.endpoint": spec.endpoint, "ragblend.tenant": principal.tenant}
    span_args = (spec.endpoint, request.headers, attributes, at.wall_ns)
    if not spec.stream:
        with gateway.tracing.request_span(*span_args) as span:
            finals = await collect_all(jobs, request, at.perf, timeout_s)
            for index, final in enumerate(finals):
                _record(gateway, spec, final, span, at, gaps_observed=False, first=index == 0)
        return full_response(
            spec.head,
            finals,
            spec.context.citations,
            spec.context.retrieve_ms,
            spec.token_texts,
            spec.tools,
            spec.echo,
        )

    async def body() -> AsyncIterator[bytes]:
        try:
            with gateway.tracing.request_span(*span_args) as span:
                texts = spec.token_texts
                offsets = [TextLogprobs(texts) if texts is not None else None for _ in jobs]
                for index in range(spec.n):
                    cites = spec.context.citations if index == 0 else None
                    echo, lp = spec.echo, offsets[index]
                    if spec.head.kind != "chat" and not cites and echo is None:
                        # A completion stream opens with its first text: load clients time the first
                        # token by the first chunk. A chat stream opens with the role, as OpenAI's does.
                        continue
                    role = {"role": "assistant", "content": ""} if spec.head.kind == "chat" else {}
                    first = stream_chunk(spec.head, role, index=index)
                    if echo is not None:  # the prompt, then what is generated (openai_echo.py)
                        block = echo.block(lp) if lp is not None else None
                        first = stream_chunk(spec.head, {"text": echo.text}, index=index, logprobs=block)
                    if cites:
                        first["citations"] = citations_json(cites)
                    yield sse_data(first)
                async for chunk in _events(gateway, spec, jobs, at, timeout_s, span, offsets):
                    yield chunk
                yield sse_data("[DONE]")
        finally:
            if slot is not None:
                slot.release()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


def _chunk_logprobs(
    spec: OpenAIGeneration, event: TokenEvent, offsets: TextLogprobs | None
) -> dict[str, Any] | None:
    if spec.token_texts is None or offsets is None or not event.logprobs:
        return None
    if spec.head.kind == "chat":
        return chat_logprobs(event.logprobs, spec.token_texts)
    return offsets.block([lp.token for lp in event.logprobs], event.logprobs)


async def _events(
    gateway: Gateway,
    spec: OpenAIGeneration,
    jobs: list[Any],
    at: Received,
    timeout_s: float,
    span: Any,
    offsets: list[TextLogprobs | None],
) -> AsyncIterator[bytes]:
    """Token chunks, each choice's finishing chunk and (when asked) the usage chunk once every choice
    has finished; errors as one error chunk. `offsets` carry each choice's `text_offset` on."""
    last_token: list[float | None] = [None] * len(jobs)
    finals: list[FinishEvent | None] = [None] * len(jobs)
    calls = [ToolStream() for _ in jobs] if spec.tools else None
    try:
        async for index, event in merged_events(jobs, at.perf, timeout_s):
            if isinstance(event, TokenEvent):
                now = time.perf_counter()
                if last_token[index] is not None:
                    gateway.metrics.inter_token.labels(spec.endpoint).observe(
                        now - (last_token[index] or now)
                    )
                last_token[index] = now
                logprobs = _chunk_logprobs(spec, event, offsets[index])
                text = calls[index].feed(event.text) if calls is not None else event.text
                if text or logprobs is not None:
                    delta = text_delta(spec.head, text)
                    yield sse_data(stream_chunk(spec.head, delta, index=index, logprobs=logprobs))
            elif isinstance(event, FinishEvent):
                finals[index] = event
                reason = finish_reason(event)
                if calls is not None:
                    rest, found = calls[index].finish()
                    last: dict[str, Any] = {"content": rest} if rest else {}
                    if found:
                        last["tool_calls"] = [c.as_json(i, with_index=True) for i, c in enumerate(found)]
                        reason = "tool_calls"
                    if last:
                        yield sse_data(stream_chunk(spec.head, last, index=index))
                yield sse_data(stream_chunk(spec.head, {}, reason, index=index))
                first = sum(f is not None for f in finals) == 1
                _record(gateway, spec, event, span, at, gaps_observed=True, first=first)
        done = [f for f in finals if f is not None]
        if spec.include_usage and len(done) == len(finals):
            yield sse_data(usage_chunk(spec.head, done))
    except ApiError as exc:
        yield sse_data(openai_error(exc.status, exc.message, exc.kind))
    except Exception as exc:
        yield sse_data(openai_error(500, f"internal error: {type(exc).__name__}", "internal_error"))
