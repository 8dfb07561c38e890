"""POST /tokenize and /detokenize in process: vLLM's shapes, the chat completions' own prompt ids."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.torch_engine import TorchEngine
from tests.server.gateway_helpers import chat


def test_tokenize_a_prompt_and_back(client: TestClient, engine: TorchEngine) -> None:
    text = "The lighthouse keeper climbs the stairs at dusk."
    r = client.post("/tokenize", json={"prompt": text, "return_token_strs": True})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = engine.tokenizer(text, add_special_tokens=True).input_ids
    assert body["tokens"] == expected and body["count"] == len(expected)
    assert body["max_model_len"] == engine.max_context
    assert len(body["token_strs"]) == body["count"]
    back = client.post("/detokenize", json={"tokens": body["tokens"]})
    assert back.status_code == 200 and back.json()["prompt"].endswith(text)


def test_tokenized_messages_count_what_chat_completions_sends(client: TestClient) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    counted = client.post("/tokenize", json={"messages": messages}).json()
    answered = client.post("/v1/chat/completions", json=chat("Name a colour.")).json()
    assert counted["count"] == answered["usage"]["prompt_tokens"]
    text = client.post("/detokenize", json={"tokens": counted["tokens"]}).json()["prompt"]
    assert "Name a colour." in text and "assistant" in text


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/tokenize", {}, "exactly one of prompt or messages"),
        ("/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "exactly one"),
        ("/tokenize", {"prompt": 5}, "prompt"),
        ("/tokenize", {"prompt": "a", "model": "gpt-4"}, "does not exist"),
        ("/tokenize", {"messages": [{"role": "assistant", "content": "b"}]}, "last message"),
        (
            "/tokenize",
            {"messages": [{"role": "user", "content": "b"}], "add_generation_prompt": False},
            "only",
        ),
        ("/detokenize", {"tokens": [1, -3]}, "tokens.1"),
        ("/detokenize", {"tokens": [10**12]}, "tokens.0"),
        ("/detokenize", {"tokens": ["a"]}, "tokens"),
    ],
)
def test_bad_input_is_a_clear_4xx(client: TestClient, path: str, body: dict[str, Any], needle: str) -> None:
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert needle in r.json()["error"]["message"], r.text
