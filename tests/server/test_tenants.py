"""Tenants never share chunk caches: the same documents are cold again for another tenant."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from engine.torch_engine import TorchEngine
from server.app import create_app
from tests.server.gateway_helpers import bearer, chat, keyed_settings


def _reused(ask: Callable[[], int], tries: int = 4) -> bool:
    """Whether a repeated request finds the stored chunks; the engine stores them after answering,
    so the request right after the first may still miss them."""
    for _ in range(tries):
        if ask() > 0:
            return True
        time.sleep(0.2)
    return False


def _cached(client: TestClient, key: str, documents: list[str]) -> int:
    r = client.post(
        "/v1/chat/completions", json=chat("What is the code word?", documents=documents), headers=bearer(key)
    )
    assert r.status_code == 200, r.text
    cached: int = r.json()["usage"]["prompt_tokens_details"]["cached_tokens"]
    return cached


def test_second_tenant_does_not_see_the_first_tenants_chunk_caches(
    tmp_path: Path, model_dir: Path, engine: TorchEngine
) -> None:
    # Unique text, so no earlier test in this session can have cached it.
    marker = uuid.uuid4().hex
    documents = [
        f"The code word of the lighthouse keepers is {marker}. It is written on the door.",
        f"Visitors who know {marker} may climb the stairs to the lamp room after noon.",
    ]
    with TestClient(create_app(keyed_settings(tmp_path, model_dir), engine=engine)) as client:
        assert _cached(client, "alpha", documents) == 0  # acme, first use: computed, then stored
        assert _reused(lambda: _cached(client, "alpha", documents))  # acme again: reused
        assert _cached(client, "slow", documents) > 0  # another key of the same tenant shares them
        assert _cached(client, "beta", documents) == 0  # globex, first use: nothing of acme's is visible
        assert _reused(lambda: _cached(client, "beta", documents))


def test_native_generate_is_salted_per_tenant_too(
    tmp_path: Path, model_dir: Path, engine: TorchEngine
) -> None:
    marker = uuid.uuid4().hex
    body = {
        "query": "Which gate?",
        "documents": [f"Gate {marker} opens at dawn for the carts."],
        "max_tokens": 4,
    }
    with TestClient(create_app(keyed_settings(tmp_path, model_dir), engine=engine)) as client:

        def cached(key: str) -> int:
            r = client.post("/generate", json=body, headers=bearer(key))
            assert r.status_code == 200, r.text
            return int(r.json()["usage"]["cached_tokens"])

        assert cached("alpha") == 0
        assert _reused(lambda: cached("alpha"))
        assert cached("beta") == 0
        text = client.get("/metrics", headers=bearer("alpha")).text
        assert 'ragblend_time_to_first_token_seconds_count{endpoint="/generate"}' in text
