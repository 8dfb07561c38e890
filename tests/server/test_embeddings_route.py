"""POST /v1/embeddings in process: the collections' embedder, OpenAI's shape, keys and limits."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from engine.torch_engine import TorchEngine
from server.app import create_app
from tests.server.gateway_helpers import bearer, keyed_settings

TEXTS = ["The lamp of the harbour is lit at dusk.", "Glaciers carve valleys over centuries."]


def test_float_and_base64_agree_and_match_the_embedder(client: TestClient) -> None:
    r = client.post("/v1/embeddings", json={"input": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    floats = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert floats.shape == (2, 384)
    assert np.allclose(np.linalg.norm(floats, axis=1), 1.0, atol=1e-4)
    manager = client.app.state.services.collections  # type: ignore[attr-defined]
    assert np.allclose(floats, manager.embedder("query").embed(TEXTS), atol=1e-6)
    assert (
        body["usage"]["prompt_tokens"] > 10
        and body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]
    )
    packed = client.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in packed["data"]])
    assert np.array_equal(decoded, floats)
    single = client.post("/v1/embeddings", json={"input": TEXTS[0], "model": body["model"]}).json()
    assert np.allclose(single["data"][0]["embedding"], floats[0], atol=1e-6)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"input": []}, "1 to 2048"),
        ({"input": ""}, "must not be empty"),
        ({"input": ["a", " "]}, "input.1"),
        ({"input": [1, 2, 3]}, "input"),
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "dimensions": 12}, "384"),
        ({"input": "a", "model": "text-embedding-3-small"}, "does not embed here"),
        ({"input": "a", "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_a_clear_4xx(client: TestClient, body: dict[str, Any], needle: str) -> None:
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code in {400, 404}, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and needle in error["message"], error


def test_embeddings_need_a_key_and_count_against_its_rate(
    tmp_path: Path, model_dir: Path, engine: TorchEngine
) -> None:
    with TestClient(create_app(keyed_settings(tmp_path, model_dir), engine=engine)) as keyed:
        assert keyed.post("/v1/embeddings", json={"input": "a"}).status_code == 401
        ok = keyed.post("/v1/embeddings", json={"input": "a"}, headers=bearer("alpha"))
        assert ok.status_code == 200, ok.text
        statuses = [
            keyed.post("/v1/embeddings", json={"input": "a"}, headers=bearer("slow")).status_code
            for _ in range(3)
        ]
        assert statuses[:2] == [200, 200] and statuses[2] == 429, statuses
