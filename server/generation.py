"""Running one generation through the queue on behalf of a route: submit, stream or collect, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from engine.base import Engine, EngineUnavailable, PromptTooLong
from engine.blend.options import BlendOptions
from engine.events import FinishEvent, GenerationEvent, TokenEvent
from engine.prompt import Prompt
from engine.request_queue import Job, QueueFull
from engine.sampling import SamplingParams
from server.errors import ApiError
from server.services import Services


async def prepare_prompt(
    engine: Engine, query: str, documents: list[str] | None, system: str | None, max_tokens: int
) -> Prompt:
    """Tokenize off the event loop and check the context limit (400 naming both sizes)."""
    prompt = await run_in_threadpool(engine.build_prompt, query, documents, system)
    try:
        engine.check_fits(prompt, max_tokens)
    except PromptTooLong as exc:
        raise ApiError(400, str(exc), "context_length_exceeded") from exc
    return prompt


def submit(
    services: Services,
    engine: Engine,
    prompt: Prompt,
    params: SamplingParams,
    blend: BlendOptions | None = None,
    salt: str = "",
) -> Job:
    try:
        # A batching engine schedules the request itself; others run one at a time on the queue.
        job = engine.submit_job(prompt, params, blend, salt)
        if job is not None:
            return job
        return services.queue.submit(lambda cancel: engine.generate(prompt, params, cancel, blend, salt))
    except QueueFull as exc:
        raise ApiError(503, str(exc), "overloaded", headers={"Retry-After": str(exc.retry_after)}) from exc
    except EngineUnavailable as exc:
        raise ApiError(503, str(exc), "unavailable", headers={"Retry-After": "5"}) from exc


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def collect(job: Job, request: Request, received: float, timeout_s: float) -> FinishEvent:
    """Wait for the final event; a client disconnect cancels the generation."""

    async def consume() -> FinishEvent:
        async for event in timed_events(job, received, timeout_s):
            if isinstance(event, FinishEvent):
                return event
        raise RuntimeError("generation ended without a result")

    consumer = asyncio.ensure_future(consume())
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({consumer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if consumer in done:
            return consumer.result()
        job.cancel()
        raise ApiError(499, "client closed the request", "cancelled")
    finally:
        for task in (consumer, watcher):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def timed_events(job: Job, received: float, timeout_s: float) -> AsyncIterator[GenerationEvent]:
    """The job's events, with server-side TTFT and total time (from request receipt) on the final one.

    Past the request timeout the generation is cancelled and ApiError(504) is raised.
    """
    ttft_ms: float | None = None
    remaining = max(0.001, received + timeout_s - time.perf_counter())
    try:
        async with asyncio.timeout(remaining):
            async for event in job.events():
                if isinstance(event, TokenEvent) and ttft_ms is None:
                    ttft_ms = (time.perf_counter() - received) * 1000
                if isinstance(event, FinishEvent):
                    total = (time.perf_counter() - received) * 1000
                    event = replace(event, ttft_ms=ttft_ms if ttft_ms is not None else total, total_ms=total)
                    yield event
                    return  # the engine may go on storing chunk caches; the answer is complete
                yield event
    except TimeoutError:
        raise ApiError(
            504, f"generation exceeded the request timeout of {timeout_s:g} s", "timeout"
        ) from None
    except EngineUnavailable as exc:  # the backend's engine died under the request
        raise ApiError(503, str(exc), "unavailable", headers={"Retry-After": "5"}) from exc
    finally:
        job.cancel()
