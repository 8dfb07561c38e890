"""The OpenAI-compatible routes in process: shapes, streams, usage and OpenAI-style errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.gateway_helpers import chat

DOCS = ["The Nile flows north through Africa into the Mediterranean Sea.", "Everest is in the Himalayas."]


def stream_payloads(text: str) -> list[Any]:
    lines = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(x) for x in lines[:-1]]


def test_chat_completion_shape_and_usage(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=chat("Say hello.", max_tokens=6))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == client.get("/v1/models").json()["data"][0]["id"]
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 1 <= usage["completion_tokens"] <= 6
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert "citations" not in body


def test_stream_equals_whole_answer_and_ends_with_usage(client: TestClient) -> None:
    request = chat("Which river flows into the Mediterranean?", documents=DOCS, max_tokens=6)
    whole = client.post("/v1/chat/completions", json=request).json()
    stream_request = {**request, "stream": True, "stream_options": {"include_usage": True}}
    r = client.post("/v1/chat/completions", json=stream_request)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = stream_payloads(r.text)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert (
        len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    )
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == whole["usage"]["prompt_tokens"]
    assert usage["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert "prompt_tokens_details" in usage


def test_multi_turn_conversation_is_accepted(client: TestClient) -> None:
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": [{"type": "text", "text": "Another one?"}]},
    ]
    r = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    single = client.post("/v1/chat/completions", json=chat("Another one?")).json()
    assert r.json()["usage"]["prompt_tokens"] > single["usage"]["prompt_tokens"] + 8


def test_text_completion_whole_and_streamed(client: TestClient) -> None:
    request = {"prompt": "The capital of France is", "max_tokens": 5, "temperature": 0}
    whole = client.post("/v1/completions", json=request)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"]
    chunks = stream_payloads(client.post("/v1/completions", json={**request, "stream": True}).text)
    assert "".join(c["choices"][0]["text"] for c in chunks) == body["choices"][0]["text"]
    # No empty opening chunk: a load client times the first token by the first chunk it reads.
    opening = chunks[0]["choices"][0]["text"]
    assert opening != "" and body["choices"][0]["text"].startswith(opening)


def test_models_list_and_lookup(client: TestClient) -> None:
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and len(listed["data"]) == 1
    model = listed["data"][0]
    assert model["object"] == "model" and model["max_model_len"] > 0
    assert client.get(f"/v1/models/{model['id']}").json()["id"] == model["id"]
    r = client.get("/v1/models/gpt-4")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"messages": []}, "messages", "at least 1"),
        (chat("hi", bogus=1), "bogus", "Extra inputs"),
        (chat("hi", temperature=3), "temperature", "less than or equal to 2"),
        (chat("hi", max_tokens=1000), None, "cap of 64"),
        (chat("hi", model="gpt-4"), None, "does not exist"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, None, "last message"),
        (chat("hi", documents=["  "]), None, "documents.0"),
        (chat("hi", top_k=3), None, "top_k"),
        (chat("hi", seed=2**70), "seed", "less than or equal to"),
        (chat("hi", stream_options={"include_usage": True}), None, "stream: true"),
    ],
)
def test_bad_requests_get_openai_errors(
    client: TestClient, body: dict[str, Any], param: str | None, needle: str
) -> None:
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code in {400, 404}, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert needle in error["message"]
    assert error["param"] == param


def test_prompt_beyond_the_context_names_both_sizes(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=chat("word " * 9000, max_tokens=8))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded" and "exceeds the model's context" in error["message"]


def test_completions_refuse_unsupported_options(client: TestClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": ["a", "b"]}, "one prompt"),
        ({"prompt": ""}, "empty"),
    ]
    for extra, needle in cases:
        r = client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 4, **extra})
        assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
