"""64 clients streaming at once from a real server: every stream completes with exactly its own
answer (the one its request gets alone), and /health keeps answering throughout."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import running_server

CLIENTS = 64
COLOURS = ["red", "blue", "green", "amber", "violet", "silver", "black", "white"]
# /health must answer within this while the batch runs; generous, since two cores serve 64 streams
HEALTH_LIMIT_S = 5.0


def request_for(i: int) -> dict[str, Any]:
    colour = COLOURS[i % len(COLOURS)]
    document = f"Locker {i} in hall {i % 7} is painted {colour} and holds {i * 3 + 1} blue boxes."
    return {"query": f"What colour is locker {i}?", "documents": [document], "max_tokens": 14}


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("streams")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp),
        "RAGBLEND_DTYPE": "float32",
        "RAGBLEND_QUEUE_SIZE": str(CLIENTS),
        "RAGBLEND_MAX_BATCH_SIZE": "16",
    }
    with running_server(env, tmp / "server.log") as base:
        yield base


async def _stream(client: httpx.AsyncClient, base: str, i: int) -> tuple[str, dict[str, Any]]:
    """The concatenated token events and the final `done` event of one streamed request."""
    tokens: list[str] = []
    done: dict[str, Any] = {}
    async with client.stream("POST", f"{base}/generate", json={**request_for(i), "stream": True}) as r:
        assert r.status_code == 200, await r.aread()
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event is not None:
                data = json.loads(line[len("data: ") :])
                if event == "token":
                    tokens.append(data["text"])
                elif event == "done":
                    done = data
                event = None
    return "".join(tokens), done


async def _all_streams(base: str) -> list[tuple[str, dict[str, Any]]]:
    limits = httpx.Limits(max_connections=CLIENTS + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        return await asyncio.gather(*(_stream(client, base, i) for i in range(CLIENTS)))


class HealthProbe(threading.Thread):
    """Polls /health until stopped, keeping each answer's status and latency."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.stop = base, threading.Event()
        self.answers: list[tuple[int, float]] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.get(f"{self.base}/health").status_code
                except httpx.HTTPError:
                    status = 0
                self.answers.append((status, time.perf_counter() - started))
                self.stop.wait(0.1)


@pytest.mark.timeout(900)
def test_64_concurrent_streams_each_get_their_own_answer(server: str) -> None:
    # What each request answers alone, one after another (greedy decoding is deterministic, and the
    # batched scheduler gives the same tokens as a request alone).
    alone = []
    with httpx.Client(timeout=120) as client:
        for i in range(CLIENTS):
            r = client.post(f"{server}/generate", json=request_for(i))
            assert r.status_code == 200, r.text
            alone.append(r.json()["text"])
    assert len(set(alone)) > CLIENTS // 2, "the requests should not all have the same answer"

    probe = HealthProbe(server)
    probe.start()
    try:
        results = asyncio.run(_all_streams(server))
    finally:
        probe.stop.set()
        probe.join(timeout=30)

    for i, (streamed, done) in enumerate(results):
        assert done, f"stream {i} ended without its done event"
        assert streamed == done["text"], f"stream {i}: token events differ from its final text"
        assert streamed == alone[i], f"stream {i} got {streamed!r}, alone it answers {alone[i]!r}"
    assert len(probe.answers) >= 3, "the health probe should have run during the streams"
    assert all(status == 200 for status, _ in probe.answers), probe.answers
    slowest = max(latency for _, latency in probe.answers)
    assert slowest < HEALTH_LIMIT_S, f"/health took {slowest:.2f} s during the streams"
    ready = httpx.get(f"{server}/ready", timeout=10).json()
    assert ready["queue"] == {"waiting": 0, "running": 0}
