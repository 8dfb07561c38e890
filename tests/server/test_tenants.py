"""Tenants never share chunk caches: the same documents are cold again for another tenant."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from engine.torch_engine import TorchEngine
from server.app import create_app
from tests.server.gateway_helpers import bearer, chat, keyed_settings


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
        assert _cached(client, "alpha", documents) == 0  # acme, first use: computed and stored
        assert _cached(client, "alpha", documents) > 0  # acme again: the stored chunks are reused
        assert _cached(client, "slow", documents) > 0  # another key of the same tenant shares them
        assert _cached(client, "beta", documents) == 0  # globex, first use: nothing of acme's is visible
        assert _cached(client, "beta", documents) > 0
