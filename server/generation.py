"""Running one generation through the queue on behalf of a route: submit, stream or collect, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

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


def submit_many(
    services: Services,
    engine: Engine,
    prompt: Prompt,
    params: list[SamplingParams],
    blend: BlendOptions | None = None,
    salt: str = "",
) -> list[Job]:
    """The `n` sequences of a request, all or none: through the engine's own scheduler, which may
    share their prefill (`Engine.submit_jobs`), or one by one on the queue; when one is refused (a
    full queue), those already submitted are cancelled."""
    if len(params) == 1:
        return [submit(services, engine, prompt, params[0], blend, salt)]
    try:
        batched = engine.submit_jobs(prompt, params, blend, salt)
    except QueueFull as exc:
        raise ApiError(503, str(exc), "overloaded", headers={"Retry-After": str(exc.retry_after)}) from exc
    except EngineUnavailable as exc:
        raise ApiError(503, str(exc), "unavailable", headers={"Retry-After": "5"}) from exc
    if batched is not None:
        return batched
    jobs: list[Job] = []
    try:
        for p in params:
            jobs.append(submit(services, engine, prompt, p, blend, salt))
    except BaseException:
        for job in jobs:
            job.cancel()
        raise
    return jobs


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def collect(job: Job, request: Request, received: float, timeout_s: float) -> FinishEvent:
    """Wait for the final event; a client disconnect cancels the generation."""
    return (await collect_all([job], request, received, timeout_s))[0]


async def collect_all(
    jobs: list[Job], request: Request, received: float, timeout_s: float
) -> list[FinishEvent]:
    """Every job's final event, in order; a client disconnect (or any job's error) cancels them all."""

    async def consume(job: Job) -> FinishEvent:
        async for event in timed_events(job, received, timeout_s):
            if isinstance(event, FinishEvent):
                return event
        raise RuntimeError("generation ended without a result")

    consumer: asyncio.Future[list[FinishEvent]] = asyncio.ensure_future(
        asyncio.gather(*(consume(j) for j in jobs))
    )
    watcher: asyncio.Future[None] = asyncio.ensure_future(_wait_for_disconnect(request))
    both: set[asyncio.Future[Any]] = {consumer, watcher}
    try:
        done, _ = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        if consumer in done:
            return list(consumer.result())
        raise ApiError(499, "client closed the request", "cancelled")
    finally:
        for job in jobs:
            job.cancel()  # a no-op for the finished ones
        for task in (consumer, watcher):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def merged_events(
    jobs: list[Job], received: float, timeout_s: float
) -> AsyncIterator[tuple[int, GenerationEvent]]:
    """The events of all jobs as they come, each with its job's index; the first error is raised
    (after which every job is cancelled, as when the consumer stops early)."""
    queue: asyncio.Queue[tuple[int, GenerationEvent | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, job: Job) -> None:
        try:
            async for event in timed_events(job, received, timeout_s):
                await queue.put((index, event))
        except Exception as exc:
            await queue.put((index, exc))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.ensure_future(pump(i, j)) for i, j in enumerate(jobs)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for job in jobs:
            job.cancel()
        for task in tasks:
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
