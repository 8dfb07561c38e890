from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from engine.events import FinishEvent, GenerationEvent, TokenEvent
from engine.prompt import Prompt
from engine.request_queue import QueueFull, RequestQueue
from engine.sampling import SamplingParams
from engine.torch_engine import TorchEngine


def _slow(gate: threading.Event) -> object:
    def work(cancel: threading.Event) -> Iterator[GenerationEvent]:
        gate.wait(10)
        yield TokenEvent("x", 1)

    return work


async def _drain(job: object) -> list[GenerationEvent]:
    return [e async for e in job.events()]  # type: ignore[attr-defined]


def test_full_queue_rejects_with_retry_after() -> None:
    async def main() -> None:
        q = RequestQueue(max_waiting=1)
        gate = threading.Event()
        first = q.submit(_slow(gate))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)  # the worker picks it up; the queue is empty again
        second = q.submit(_slow(gate))  # type: ignore[arg-type]
        with pytest.raises(QueueFull) as info:
            q.submit(_slow(gate))  # type: ignore[arg-type]
        assert info.value.retry_after >= 1
        gate.set()
        assert len(await _drain(first)) == 1
        assert len(await _drain(second)) == 1
        q.close()

    asyncio.run(main())


def test_engine_errors_reach_the_caller_and_worker_survives() -> None:
    def broken(cancel: threading.Event) -> Iterator[GenerationEvent]:
        raise RuntimeError("boom")
        yield  # pragma: no cover

    async def main() -> None:
        q = RequestQueue(max_waiting=4)
        with pytest.raises(RuntimeError, match="boom"):
            await _drain(q.submit(broken))
        ok = q.submit(_slow(threading.Event() if False else _set_event()))  # type: ignore[arg-type]
        assert len(await _drain(ok)) == 1
        q.close()

    asyncio.run(main())


def _set_event() -> threading.Event:
    e = threading.Event()
    e.set()
    return e


def test_cancel_stops_a_real_generation(engine: TorchEngine) -> None:
    prompt: Prompt = engine.build_prompt("Count from one to one thousand.", None, None)
    params = SamplingParams(max_tokens=500)

    async def main() -> FinishEvent:
        q = RequestQueue(max_waiting=2)
        job = q.submit(lambda cancel: engine.generate(prompt, params, cancel))
        final = None
        seen = 0
        async for event in job.events():
            if isinstance(event, TokenEvent):
                seen += 1
                if seen == 3:
                    job.cancel()
            else:
                final = event
        q.close()
        assert final is not None
        return final

    final = asyncio.run(main())
    assert final.finish_reason == "cancelled"
    assert final.completion_tokens < 50
