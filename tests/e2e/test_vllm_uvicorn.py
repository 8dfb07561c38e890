"""RAGBLEND_ENGINE=vllm behind a real uvicorn: readiness, /generate with blending, the OpenAI endpoints,
and a vLLM engine process that dies (503s, no hang). One server (one vLLM) for the module."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from tests.e2e.server_process import call, running_server, wait_for_job

pytestmark = pytest.mark.vllm

DOCS = [
    "The Amazon River in South America is the largest river by discharge volume of water in the world.",
    "The Nile is a major north-flowing river in northeastern Africa, flowing into the Mediterranean Sea.",
]
QUESTION = "Which river flows into the Mediterranean Sea?"


class ReadyWatcher(threading.Thread):
    """Polls /ready of whatever server comes up on `base` and records the statuses it answered."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.base: str | None = None
        self.seen: list[tuple[int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.base is not None:
                try:
                    r = httpx.get(f"{self.base}/ready", timeout=2)
                    self.seen.append((r.status_code, r.json().get("status", "")))
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ReadyWatcher]]:
    tmp = tmp_path_factory.mktemp("vllm-server")
    env = {
        "RAGBLEND_ENGINE": "vllm",
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_MAX_CONTEXT": "2048",
        "RAGBLEND_MAX_TOKENS_LIMIT": "256",
        "RAGBLEND_KV_DISK": "false",
        "RAGBLEND_VLLM_KV_CACHE_GIB": "1",
    }
    watcher = ReadyWatcher()
    original = httpx.get

    def spy(url: str, **kwargs: object) -> httpx.Response:  # learns the server's port from its first probe
        if watcher.base is None and url.endswith("/ready"):
            watcher.base = url[: -len("/ready")]
        return original(url, **kwargs)  # type: ignore[arg-type]

    watcher.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(httpx, "get", spy)
            started = running_server(env, tmp / "server.log", ready_timeout=600)
            base = started.__enter__()
        try:
            yield base, watcher
        finally:
            started.__exit__(None, None, None)
    finally:
        watcher.stop.set()


def test_not_ready_until_vllm_is_up(server: tuple[str, ReadyWatcher]) -> None:
    base, watcher = server
    time.sleep(0.5)
    assert (503, "loading") in watcher.seen  # answered while vLLM was starting
    r = httpx.get(f"{base}/ready", timeout=5)
    assert r.status_code == 200 and r.json()["engine"] == "vllm"


def test_generate_blends_once_the_first_requests_pieces_are_stored(server: tuple[str, ReadyWatcher]) -> None:
    base, _ = server
    body = {"query": QUESTION, "documents": DOCS, "max_tokens": 16, "blend": {"mode": "cacheblend"}}
    first = httpx.post(f"{base}/generate", json=body, timeout=300)
    assert first.status_code == 200, first.text
    assert first.json()["usage"]["cached_tokens"] == 0
    # The pieces are stored after the answer, in the background, and a request never waits for that
    # work: one that comes before it is done finds them missing and vLLM prefills it whole. So the
    # same documents, reordered, are asked until a request blends them.
    for _ in range(40):
        second = httpx.post(f"{base}/generate", json={**body, "documents": DOCS[::-1]}, timeout=300)
        assert second.status_code == 200, second.text
        usage = second.json()["usage"]
        if usage["recomputed_tokens"] > 0:
            break
        time.sleep(0.25)
    assert usage["cached_tokens"] > 40 and usage["completion_tokens"] >= 1
    assert second.json()["text"].strip()
    # the response says where the time before vLLM went
    timings = second.json()["timings"]
    assert timings["queue_ms"] >= 0 and timings["plan_ms"] >= timings["blend_ms"] > 0
    assert timings["handoff_ms"] > 0 and timings["ttft_ms"] >= timings["plan_ms"]


def test_generate_streams_tokens_then_done(server: tuple[str, ReadyWatcher]) -> None:
    base, _ = server
    events: list[tuple[str, dict]] = []
    body = {"query": QUESTION, "documents": DOCS, "max_tokens": 12, "stream": True, "stop": ["\n\n"]}
    with httpx.stream("POST", f"{base}/generate", json=body, timeout=300) as r:
        assert r.status_code == 200
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                events.append((event, json.loads(line[6:])))
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and kinds.count("token") >= 1
    done = events[-1][1]
    assert done["text"] == "".join(d["text"] for e, d in events if e == "token")


def test_bad_input_is_still_refused_by_name(server: tuple[str, ReadyWatcher]) -> None:
    base, _ = server
    r = httpx.post(
        f"{base}/generate", json={"query": "x", "blend": {"mode": "cacheblend", "ratio": 2}}, timeout=30
    )
    assert r.status_code == 422 and "ratio" in r.json()["error"]["message"]


def test_openai_chat_and_completions(server: tuple[str, ReadyWatcher]) -> None:
    base, _ = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=300)
    model = client.models.list().data[0].id
    chat = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=12,
        extra_body={"documents": DOCS, "blend": {"mode": "reuse"}},
    )
    assert chat.choices[0].message.content and chat.usage is not None and chat.usage.completion_tokens >= 1
    stream = client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=8, stream=True
    )
    text = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
    assert text.strip()


def test_ingestion_warms_chunk_caches_and_selection_answers(server: tuple[str, ReadyWatcher]) -> None:
    """On vLLM too: ingestion stores every chunk's cache, so the first question from the collection
    blends, and chunk selection (priced by the backend's chunk KV) picks among the retrieved chunks."""
    base, _ = server
    r = call(
        "POST", f"{base}/v1/collections", json={"name": "rivers", "chunker": {"method": "fixed", "size": 32}}
    )
    assert r.status_code == 201, r.text
    r = call("POST", f"{base}/v1/collections/rivers/documents", json={"text": " ".join(DOCS), "name": "r"})
    assert r.status_code == 202, r.text
    job = wait_for_job(base, r.json()["job_id"], timeout=300)
    assert job["state"] == "succeeded", job
    body = {"query": QUESTION, "collection": "rivers", "max_tokens": 8, "blend": {"mode": "cacheblend"}}
    first = httpx.post(f"{base}/generate", json=body, timeout=300)
    assert first.status_code == 200, first.text
    usage = first.json()["usage"]
    assert usage["cached_tokens"] > 0 and usage["prompt_tokens"] - usage["cached_tokens"] < 40, usage
    picked = httpx.post(
        f"{base}/generate", json={**body, "selection": {"method": "topk", "budget": 4096}}, timeout=300
    )
    assert picked.status_code == 200, picked.text
    report = picked.json()["selection"]
    assert report["chosen"] and report["warm"] == len(report["chosen"]), report


def test_a_dead_vllm_fails_ready_and_requests_get_503(server: tuple[str, ReadyWatcher]) -> None:
    """Last in the module: it kills the server's vLLM engine process."""
    base, _ = server
    me = psutil.Process()
    cores = [
        p
        for p in me.children(recursive=True)
        if any("EngineCore" in part for part in (p.cmdline() or [p.name()]))
    ]
    assert len(cores) == 1, [p.cmdline() for p in me.children(recursive=True)]
    cores[0].kill()
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/ready", timeout=5).status_code == 200:
        assert time.monotonic() < deadline, "/ready still 200 a minute after vLLM died"
        time.sleep(0.5)
    ready = httpx.get(f"{base}/ready", timeout=5)
    assert ready.status_code == 503 and ready.json() == {"status": "failed", "reason": "engine_dead"}
    started = time.monotonic()
    r = httpx.post(f"{base}/generate", json={"query": QUESTION, "max_tokens": 8}, timeout=30)
    assert r.status_code == 503 and "vLLM" in r.json()["error"]["message"]
    assert time.monotonic() - started < 10
    assert httpx.get(f"{base}/health", timeout=5).status_code == 503  # liveness fails: a restart is due
