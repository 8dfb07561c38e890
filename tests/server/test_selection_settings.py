"""Bad chunk-selection settings are refused with a message naming the field: 422 on /generate, and
400 (invalid_request_error, as OpenAI answers invalid parameters) on chat completions; good ones are
accepted."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from retrieval.selection.config import MAX_ITERATIONS

DOCS = ["The mill by the river grinds wheat every autumn.", "The bakery sells rye bread on Fridays."]

BAD: list[tuple[dict[str, Any], str]] = [
    ({"method": "corag", "budget": -5}, "budget"),
    ({"method": "corag", "budget": 0}, "budget"),
    ({"method": "corag", "iterations": MAX_ITERATIONS + 1}, "iterations"),
    ({"method": "corag", "iterations": 0}, "iterations"),
    ({"method": "beam"}, "method"),
    ({"method": "corag", "c": -1}, "c"),
    ({"method": "corag", "lambda": -0.5}, "lambda"),
    ({"method": "corag", "budget_unit": "seconds"}, "budget_unit"),
    ({"method": "corag", "budget": 10_000_000}, "budget"),
    ({"method": "corag", "surprise": 1}, "surprise"),
]


def _generate(client: TestClient, selection: dict[str, Any]) -> Any:
    body = {"query": "What does the mill grind?", "documents": DOCS, "max_tokens": 2, "selection": selection}
    return client.post("/generate", json=body)


def _chat(client: TestClient, selection: dict[str, Any]) -> Any:
    body = {
        "messages": [{"role": "user", "content": "What does the mill grind?"}],
        "documents": DOCS,
        "max_tokens": 2,
        "selection": selection,
    }
    return client.post("/v1/chat/completions", json=body)


@pytest.mark.parametrize(("selection", "field"), BAD, ids=[f for _, f in BAD])
@pytest.mark.parametrize(("send", "status"), [(_generate, 422), (_chat, 400)], ids=["generate", "chat"])
def test_bad_selection_is_refused_naming_the_field(
    client: TestClient, send: Any, status: int, selection: dict[str, Any], field: str
) -> None:
    r = send(client, selection)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert "selection" in message and field in message, message


@pytest.mark.parametrize("send", [_generate, _chat], ids=["generate", "chat"])
def test_good_selection_is_accepted(client: TestClient, send: Any) -> None:
    r = send(client, {"method": "corag", "budget": 64, "iterations": 8, "c": 1.5, "lambda": 0.2})
    assert r.status_code == 200, r.text


def test_budget_in_ms_uses_the_measured_prefill_speed(client: TestClient) -> None:
    """A budget in ms is priced with the engine's fitted prefill time (per token and per attention
    pair): the pick stays within it, and a budget too small for any document picks none."""
    roomy = _generate(client, {"method": "corag", "budget": 60_000, "budget_unit": "ms", "iterations": 8})
    assert roomy.status_code == 200, roomy.text
    report = roomy.json()["selection"]
    assert report["budget_unit"] == "ms" and report["chosen"]
    assert 0 < report["cost"] <= report["budget"]
    tiny = _generate(client, {"method": "topk", "budget": 0.001, "budget_unit": "ms"})
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["selection"]["chosen"] == []
