"""/generate against a real uvicorn process: streamed and not, disconnects, a full queue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import running_server

DOCS = [
    "The Amazon River in South America is the largest river by discharge volume of water in the world.",
    "The Nile is a major north-flowing river in northeastern Africa, flowing into the Mediterranean Sea.",
]
QUESTION = "Which river flows into the Mediterranean Sea?"
LONG = {"query": "Write a very long story about a dragon, a knight and a city.", "max_tokens": 400}


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("server")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_QUEUE_SIZE": "1",
        "RAGBLEND_MAX_BATCH_SIZE": "1",  # one request in the batch, one waiting: the third is refused
        "RAGBLEND_MAX_TOKENS_LIMIT": "512",
    }
    with running_server(env, tmp / "server.log") as base:
        yield base


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: ") and event is not None:
            yield event, json.loads(line[len("data: ") :])
            event = None


def test_generate_with_two_documents(server: str) -> None:
    r = httpx.post(
        f"{server}/generate", json={"query": QUESTION, "documents": DOCS, "max_tokens": 24}, timeout=120
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"].strip()
    assert body["finish_reason"] in {"stop", "length"}
    usage, timings = body["usage"], body["timings"]
    assert usage["prompt_tokens"] > 60 and 1 <= usage["completion_tokens"] <= 24
    assert 0 < timings["ttft_ms"] <= timings["total_ms"]


def test_streamed_text_equals_non_streamed(server: str) -> None:
    request = {"query": QUESTION, "documents": DOCS, "max_tokens": 24}
    plain = httpx.post(f"{server}/generate", json=request, timeout=120).json()
    with httpx.stream("POST", f"{server}/generate", json={**request, "stream": True}, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r))
    tokens = [data["text"] for kind, data in events if kind == "token"]
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and len(tokens) >= 2
    done = events[-1][1]
    assert "".join(tokens) == done["text"] == plain["text"]
    assert done["usage"] == plain["usage"]
    assert {"ttft_ms", "total_ms"} <= set(done["timings"])


def _idle(server: str, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        queue = httpx.get(f"{server}/ready", timeout=5).json()["queue"]
        if queue == {"waiting": 0, "running": 0}:
            return True
        time.sleep(0.2)
    return False


def test_client_disconnect_cancels_generation(server: str) -> None:
    with httpx.stream("POST", f"{server}/generate", json={**LONG, "stream": True}, timeout=120) as r:
        seen = 0
        for kind, _ in sse_events(r):
            seen += kind == "token"
            if seen == 3:
                break
    # 400 tokens take far longer than this on two cores; only a cancelled generation goes idle so soon.
    assert _idle(server, within_s=5)


def test_full_queue_answers_503_with_retry_after(server: str) -> None:
    results: dict[str, int] = {}
    with httpx.stream("POST", f"{server}/generate", json={**LONG, "stream": True}, timeout=120) as running:
        it = sse_events(running)
        next(it)  # the long request is running now
        waiting = threading.Thread(
            target=lambda: results.setdefault(
                "waiting",
                httpx.post(
                    f"{server}/generate", json={"query": "Hi", "max_tokens": 2}, timeout=120
                ).status_code,
            )
        )
        waiting.start()
        deadline = time.monotonic() + 10
        while httpx.get(f"{server}/ready").json()["queue"]["waiting"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = httpx.post(f"{server}/generate", json={"query": "Hi", "max_tokens": 2}, timeout=30)
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert "queue is full" in r.json()["error"]["message"]
    waiting.join(timeout=120)
    assert results["waiting"] == 200
    assert (
        httpx.post(f"{server}/generate", json={"query": "Hi", "max_tokens": 2}, timeout=60).status_code == 200
    )
