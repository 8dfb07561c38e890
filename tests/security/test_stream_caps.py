"""A key's cap on concurrent streams holds on every streaming route: `/generate` as well as the OpenAI
routes, and across replicas sharing one Redis (429 with Retry-After past it, nothing lost)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cache.redis_conn import RedisConnection
from engine.torch_engine import TorchEngine
from server.api_keys import KeyRing, Principal
from server.app import create_app
from server.shared_limits import SharedStreamLimiter
from tests.cache.conftest import RedisServer, redis_server
from tests.server.gateway_helpers import KEYS, bearer, chat, key_specs, keyed_settings

__all__ = ["redis_server"]  # the fixture, for this module

GENERATE: dict[str, Any] = {
    "query": "What colour is the sky?",
    "documents": ["The sky is blue."],
    "max_tokens": 4,
}


def principal_one() -> Principal:
    found = KeyRing(key_specs(), b"x").authenticate(KEYS["one"])  # the key capped at one stream
    assert found is not None
    return found


@pytest.fixture()
def keyed(tmp_path: Path, model_dir: Path, engine: TorchEngine) -> Iterator[TestClient]:
    with TestClient(create_app(keyed_settings(tmp_path, model_dir), engine=engine)) as c:
        yield c


def test_a_second_generate_stream_past_the_cap_is_429(keyed: TestClient) -> None:
    gateway = keyed.app.state.gateway  # type: ignore[attr-defined]
    held = gateway.streams.acquire(principal_one())  # one stream of this key is open
    r = keyed.post("/generate", json={**GENERATE, "stream": True}, headers=bearer("one"))
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert "concurrent streams" in r.json()["error"]["message"]
    assert gateway.streams.open_streams("one") == 1  # the refused stream took no slot
    # answers that are not streamed are not capped, and other keys are not affected
    assert keyed.post("/generate", json=GENERATE, headers=bearer("one")).status_code == 200
    r = keyed.post("/generate", json={**GENERATE, "stream": True}, headers=bearer("alpha"))
    assert r.status_code == 200 and "event: done" in r.text
    held.release()
    r = keyed.post("/generate", json={**GENERATE, "stream": True}, headers=bearer("one"))
    assert r.status_code == 200, r.text
    assert "event: done" in r.text
    assert gateway.streams.open_streams("one") == 0  # a finished stream frees its slot


def test_generate_and_the_openai_routes_share_one_cap(keyed: TestClient) -> None:
    gateway = keyed.app.state.gateway  # type: ignore[attr-defined]
    held = gateway.streams.acquire(principal_one())
    r = keyed.post("/v1/chat/completions", json=chat("hi", stream=True), headers=bearer("one"))
    assert r.status_code == 429
    r = keyed.post("/generate", json={**GENERATE, "stream": True}, headers=bearer("one"))
    assert r.status_code == 429
    held.release()
    r = keyed.post("/generate", json={**GENERATE, "stream": True}, headers=bearer("one"))
    assert r.status_code == 200
    assert gateway.streams.open_streams("one") == 0


def test_a_refused_generate_stream_loses_nothing(keyed: TestClient) -> None:
    """Bad input on a capped key is still a 4xx naming the field, and frees no slot it never took."""
    gateway = keyed.app.state.gateway  # type: ignore[attr-defined]
    too_long = {**GENERATE, "stream": True, "max_tokens": 10_000}
    r = keyed.post("/generate", json=too_long, headers=bearer("one"))
    assert r.status_code == 422 and "max_tokens" in r.json()["error"]["message"]
    assert gateway.streams.open_streams("one") == 0


def test_a_stream_open_on_another_replica_counts(
    redis_server: RedisServer, tmp_path: Path, model_dir: Path, engine: TorchEngine
) -> None:
    settings = keyed_settings(tmp_path, model_dir, redis_url=redis_server.url)
    other_replica = SharedStreamLimiter(RedisConnection(redis_server.url), slot_ttl_s=60)
    with TestClient(create_app(settings, engine=engine)) as client:
        held = other_replica.acquire(principal_one())
        r = client.post("/generate", json={**GENERATE, "stream": True}, headers=bearer("one"))
        assert r.status_code == 429, r.text
        assert "retry-after" in r.headers
        held.release()
        r = client.post("/generate", json={**GENERATE, "stream": True}, headers=bearer("one"))
        assert r.status_code == 200 and "event: done" in r.text
        assert other_replica.open_streams("one") == 0
