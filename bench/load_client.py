"""One streamed /generate request timed from the client, and the two ways of sending many.

Open loop: requests leave at Poisson arrival times whatever the server does, so a slow server
builds a queue (what real traffic does). Closed loop: a fixed number of clients, each sending its
next request when the previous answer is complete. Both stop at a deadline: requests not yet sent
are dropped, requests still running are cancelled and counted as errors.

Timing follows the usual serving-benchmark definitions: TTFT from sending to the first streamed
token event; inter-token latency (ITL) the gaps between successive token events; end-to-end latency
from sending to the final event.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

Payload = dict[str, Any]
Sender = Callable[[httpx.AsyncClient, str, Payload, "RequestRecord"], Coroutine[Any, Any, None]]


@dataclass
class RequestRecord:
    """What one request measured; times in milliseconds, `sent_s` from the start of its level."""

    index: int
    sent_s: float = 0.0
    ok: bool = False
    status: int | None = None
    error: str | None = None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    recomputed_tokens: int = 0
    finish_reason: str | None = None
    # the server's own timings: TTFT from receiving the request (its queueing included), and the
    # prefill alone; against the client's TTFT they tell waiting from computing
    server_ttft_ms: float | None = None
    prefill_ms: float | None = None

    @property
    def tpot_ms(self) -> float | None:
        """Time per output token after the first, as (E2E - TTFT) / (tokens - 1)."""
        if not self.ok or self.ttft_ms is None or self.e2e_ms is None or self.completion_tokens < 2:
            return None
        return (self.e2e_ms - self.ttft_ms) / (self.completion_tokens - 1)


def _error_text(status: int, body: bytes) -> str:
    try:
        err = json.loads(body)["error"]
        return f"http {status} {err['type']}: {err['message']}"[:300]
    except (ValueError, KeyError, TypeError):
        return f"http {status}: {body[:200]!r}"


def _take_done(rec: RequestRecord, data: dict[str, Any]) -> None:
    usage = data.get("usage", {})
    rec.prompt_tokens = int(usage.get("prompt_tokens", 0))
    rec.completion_tokens = int(usage.get("completion_tokens", 0))
    rec.cached_tokens = int(usage.get("cached_tokens") or 0)
    rec.recomputed_tokens = int(usage.get("recomputed_tokens") or 0)
    rec.finish_reason = data.get("finish_reason")
    timings = data.get("timings", {})
    rec.server_ttft_ms = timings.get("ttft_ms")
    rec.prefill_ms = timings.get("prefill_ms")
    rec.ok = True


async def stream_generate(client: httpx.AsyncClient, url: str, payload: Payload, rec: RequestRecord) -> None:
    """Send `payload` with streaming on and fill `rec` as events arrive (so a cancelled request
    keeps what it measured)."""
    start = time.perf_counter()
    last: float | None = None
    try:
        async with client.stream("POST", url, json={**payload, "stream": True}) as resp:
            rec.status = resp.status_code
            if resp.status_code != 200:
                rec.error = _error_text(resp.status_code, await resp.aread())
                return
            event = ""
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    event = line[len("event:") :].strip()
                    continue
                if not line.startswith("data:"):
                    continue
                now = time.perf_counter()
                data = json.loads(line[len("data:") :])
                if event == "token":
                    if last is None:
                        rec.ttft_ms = (now - start) * 1000
                    else:
                        rec.itl_ms.append((now - last) * 1000)
                    last = now
                elif event == "done":
                    _take_done(rec, data)
                elif event == "error":
                    rec.error = f"stream {data.get('type')}: {data.get('message')}"[:300]
        if not rec.ok and rec.error is None:
            rec.error = "stream ended without a done event"
    except httpx.HTTPError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        rec.e2e_ms = (time.perf_counter() - start) * 1000
        # An answer with no text at all (an immediate stop) has its first token at the end.
        if rec.ok and rec.ttft_ms is None:
            rec.ttft_ms = rec.e2e_ms


async def _finish(tasks: list[asyncio.Task[None]], records: list[RequestRecord], deadline: float) -> None:
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for rec in records:
        if not rec.ok and rec.error is None:
            rec.error = "cancelled at the level's time limit"


def poisson_times(rate: float, count: int, seed: int) -> list[float]:
    """`count` arrival times (seconds) of a Poisson process of `rate` requests per second."""
    rng = random.Random(seed)
    times, at = [], 0.0
    for _ in range(count):
        at += rng.expovariate(rate)
        times.append(at)
    return times


async def open_loop(
    client: httpx.AsyncClient,
    url: str,
    payloads: Sequence[Payload],
    rate: float,
    max_seconds: float,
    seed: int,
    send: Sender | None = None,
) -> list[RequestRecord]:
    """Send `payloads` at Poisson arrival times of `rate`/s (with `send`, /generate's streaming
    client by default); everything stops after `max_seconds`."""
    send = send or stream_generate
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    records: list[RequestRecord] = []
    tasks: list[asyncio.Task[None]] = []
    for i, (at, payload) in enumerate(zip(poisson_times(rate, len(payloads), seed), payloads, strict=True)):
        if t0 + at >= deadline:
            break
        await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
        rec = RequestRecord(index=i, sent_s=time.perf_counter() - t0)
        records.append(rec)
        tasks.append(asyncio.create_task(send(client, url, payload, rec)))
    await _finish(tasks, records, deadline)
    return records


async def closed_loop(
    client: httpx.AsyncClient,
    url: str,
    payloads: Sequence[Payload],
    concurrency: int,
    max_seconds: float,
) -> list[RequestRecord]:
    """`concurrency` clients send `payloads` back to back; everything stops after `max_seconds`."""
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    records: list[RequestRecord] = []
    queue: Iterator[tuple[int, Payload]] = iter(enumerate(payloads))

    async def client_loop() -> None:
        for i, payload in queue:
            if time.perf_counter() >= deadline:
                return
            rec = RequestRecord(index=i, sent_s=time.perf_counter() - t0)
            records.append(rec)
            await stream_generate(client, url, payload, rec)

    tasks = [asyncio.create_task(client_loop()) for _ in range(concurrency)]
    await _finish(tasks, records, deadline)
    records.sort(key=lambda r: r.index)
    return records
