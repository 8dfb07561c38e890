"""Bad input gets a 4xx whose message names the problem; the server keeps answering afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

GOOD = {"query": "What colour is the sky?", "documents": ["The sky is blue."], "max_tokens": 4}


def _ok(client: TestClient) -> None:
    r = client.post("/generate", json=GOOD)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] >= 1


@pytest.mark.parametrize(
    "body,status,needle",
    [
        ({}, 422, "query"),
        ({"query": ""}, 422, "query"),
        ({"query": 42}, 422, "query"),
        ({"query": "q", "documents": "not a list"}, 422, "documents"),
        ({"query": "q", "documents": [1, 2]}, 422, "documents"),
        ({"query": "q", "documents": ["  "]}, 422, "documents.0"),
        ({"query": "q", "max_tokens": 0}, 422, "max_tokens"),
        ({"query": "q", "max_tokens": -5}, 422, "max_tokens"),
        ({"query": "q", "max_tokens": 65}, 422, "max_tokens"),
        ({"query": "q", "max_tokens": "many"}, 422, "max_tokens"),
        ({"query": "q", "temperature": -1}, 422, "temperature"),
        ({"query": "q", "top_p": 0}, 422, "top_p"),
        ({"query": "q", "seed": 2**70}, 422, "seed"),
        ({"query": "q", "seed": -(2**70)}, 422, "seed"),
        ({"query": "q", "seed": 1.5}, 422, "seed"),
        ({"query": "q", "stop": [""]}, 422, "stop"),
        ({"query": "q", "stream": "yes please"}, 422, "stream"),
        ({"query": "q", "unknown_field": 1}, 422, "unknown_field"),
        ({"query": "q", "documents": ["d"] * 10_000}, 422, "documents"),
        ({"query": "q", "blend": {"mode": "magic"}}, 422, "blend.mode"),
        ({"query": "q", "blend": {"ratio": 1.5}}, 422, "blend.ratio"),
        ({"query": "q", "blend": {"ratio": -0.1}}, 422, "blend.ratio"),
        ({"query": "q", "blend": "cacheblend"}, 422, "blend"),
        ({"query": "q", "blend": {"temperature": 9}}, 422, "blend.temperature"),
        ({"query": "q", "blend": {"mode": "cacheblend", "temperature": 1.2}}, 422, "temperature"),
    ],
)
def test_bad_input_is_a_clear_4xx(client: TestClient, body: dict[str, Any], status: int, needle: str) -> None:
    r = client.post("/generate", json=body)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert needle in message
    _ok(client)


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post("/generate", content=b'{"query": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "JSON" in r.json()["error"]["message"]
    _ok(client)


def test_prompt_longer_than_context_is_400_naming_sizes(client: TestClient) -> None:
    long_doc = "word " * 9000
    r = client.post("/generate", json={"query": "q", "documents": [long_doc], "max_tokens": 8})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "exceeds the model's context of 8192 tokens" in message
    assert "max_tokens 8" in message
    _ok(client)


def test_body_over_limit_is_413(client: TestClient) -> None:
    r = client.post("/generate", json={"query": "q", "documents": ["x" * 300_000]})
    assert r.status_code == 413
    assert "200000 bytes" in r.json()["error"]["message"]
    _ok(client)


def test_chunked_body_over_limit_is_413(client: TestClient) -> None:
    def chunks() -> Any:
        yield b'{"query": "q", "documents": ["'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'"]}'

    r = client.post("/generate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    _ok(client)


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
