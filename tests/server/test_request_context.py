"""Request ids (echoed, carried by the JSON log line) and the serving metrics after a request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from server.logging_json import JsonFormatter
from tests.server.gateway_helpers import chat


@pytest.fixture()
def request_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ragblend.request")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_a_sane_incoming_request_id_is_echoed_and_logged(
    client: TestClient, request_log: io.StringIO
) -> None:
    r = client.get("/v1/models", headers={"X-Request-ID": "trace-42.a:b"})
    assert r.headers["x-request-id"] == "trace-42.a:b"
    lines = [json.loads(line) for line in request_log.getvalue().splitlines()]
    mine = [x for x in lines if x.get("request_id") == "trace-42.a:b"]
    assert len(mine) == 1
    assert mine[0]["message"] == "request" and mine[0]["status"] == 200 and mine[0]["route"] == "/v1/models"
    assert mine[0]["duration_ms"] >= 0 and mine[0]["level"] == "info"


@pytest.mark.parametrize("incoming", ["has space", "x" * 200, "<script>", ""])
def test_an_odd_request_id_is_replaced_by_a_generated_one(client: TestClient, incoming: str) -> None:
    r = client.get("/health", headers={"X-Request-ID": incoming})
    echoed = r.headers["x-request-id"]
    assert echoed != incoming and len(echoed) == 32 and echoed.isalnum()


def test_errors_carry_the_request_id_too(client: TestClient) -> None:
    assert client.post("/v1/chat/completions", json={}).headers["x-request-id"]
    assert client.get("/no/such/route").headers["x-request-id"]


def test_chat_completion_id_is_the_request_id(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=chat("Hi"), headers={"X-Request-ID": "abc123"})
    assert r.json()["id"] == "chatcmpl-abc123"


def test_metrics_after_a_generation(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=chat("Hello there", max_tokens=5))
    assert r.status_code == 200
    generated = r.json()["usage"]["completion_tokens"]
    text = client.get("/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    route = 'method="POST",route="/v1/chat/completions",status="200"'
    assert samples[f"ragblend_http_requests_total{{{route}}}"] == 1
    assert samples[f"ragblend_http_request_duration_seconds_count{{{route}}}"] == 1
    endpoint = '{endpoint="/v1/chat/completions"}'
    assert samples[f"ragblend_time_to_first_token_seconds_count{endpoint}"] == 1
    assert samples[f"ragblend_generation_tokens_total{endpoint}"] == generated
    assert samples[f"ragblend_inter_token_latency_seconds_count{endpoint}"] == generated - 1
    assert samples[f"ragblend_prompt_tokens_total{endpoint}"] == r.json()["usage"]["prompt_tokens"]
    for name in ("cached_prompt", "blended_prompt", "recomputed_prompt"):
        assert f"ragblend_{name}_tokens_total{endpoint}" in samples
    for gauge in ("ragblend_queue_depth", "ragblend_requests_running", "ragblend_batch_size"):
        assert samples[gauge] >= 0
