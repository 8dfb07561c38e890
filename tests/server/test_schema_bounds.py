"""Every number a request may carry is bounded in the OpenAPI schema, and no value of any of them,
however large, small or odd, gets a 5xx: out-of-range values are a 4xx naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.server.schema_bounds import unbounded_numbers

HUGE = [2**70, -(2**70), 1e308, -1e308]
QUESTION = {"query": "What colour is the sky?", "documents": ["The sky is blue."], "max_tokens": 2}
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"prompt": "The sky is", "max_tokens": 2}


def test_no_request_number_is_unbounded(tmp_path: Path) -> None:
    schema = create_app(Settings(data_dir=tmp_path)).openapi()
    assert "/generate" in schema["paths"] and "/v1/chat/completions" in schema["paths"]
    assert unbounded_numbers(schema) == []


def test_the_walk_finds_an_unbounded_field() -> None:
    """The check itself can fail: a number without a maximum, nested behind a reference, is named."""
    schema = {
        "paths": {
            "/x": {
                "post": {
                    "parameters": [{"name": "page", "schema": {"type": "integer", "minimum": 0}}],
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "A": {"properties": {"b": {"anyOf": [{"$ref": "#/components/schemas/B"}, {"type": "null"}]}}},
                "B": {
                    "properties": {
                        "n": {"type": "number", "exclusiveMinimum": 0},
                        "a": {"$ref": "#/components/schemas/A"},
                    }
                },
            }
        },
    }
    assert unbounded_numbers(schema) == [
        "B.properties.n (number, no upper bound)",
        "POST /x: parameter page (integer, no upper bound)",
    ]


CASES: list[tuple[str, dict[str, Any], str]] = [
    ("/generate", QUESTION, "max_tokens"),
    ("/generate", QUESTION, "top_k"),
    ("/generate", QUESTION, "seed"),
    ("/generate", QUESTION, "temperature"),
    ("/generate", QUESTION, "top_p"),
    ("/generate", QUESTION, "selection.budget"),
    ("/generate", QUESTION, "selection.seed"),
    ("/generate", QUESTION, "selection.iterations"),
    ("/generate", QUESTION, "selection.time_cap_ms"),
    ("/generate", QUESTION, "blend.ratio"),
    ("/v1/chat/completions", CHAT, "max_tokens"),
    ("/v1/chat/completions", CHAT, "max_completion_tokens"),
    ("/v1/chat/completions", CHAT, "n"),
    ("/v1/chat/completions", CHAT, "top_logprobs"),
    ("/v1/chat/completions", CHAT, "top_k"),
    ("/v1/chat/completions", CHAT, "seed"),
    ("/v1/chat/completions", CHAT, "presence_penalty"),
    ("/v1/completions", COMPLETION, "logprobs"),
    ("/v1/completions", COMPLETION, "n"),
    ("/v1/retrieve", {"query": "q", "collection": "none"}, "top_k"),
    ("/v1/collections", {"name": "bounds"}, "chunker.overlap"),
    ("/v1/collections", {"name": "bounds"}, "chunker.ppl_context"),
    ("/v1/collections", {"name": "bounds"}, "chunker.theta"),
    ("/v1/collections", {"name": "bounds"}, "embedding.context_weight"),
]


def with_value(body: dict[str, Any], field: str, value: object) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in body.items()}
    *parents, leaf = field.split(".")
    node = out
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value
    return out


@pytest.mark.parametrize("path,body,field", CASES, ids=[f"{p} {f}" for p, _, f in CASES])
def test_extreme_values_are_a_4xx_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    for value in HUGE:
        r = client.post(path, json=with_value(body, field, value))
        assert 400 <= r.status_code < 500, (field, value, r.status_code, r.text)
        assert field.rsplit(".", 1)[-1] in r.json()["error"]["message"], r.text
    assert client.post("/generate", json=QUESTION).status_code == 200  # still serving
