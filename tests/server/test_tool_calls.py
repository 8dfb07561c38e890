"""Tools: the parser (whole and streamed), templates that accept tools, and the 400 on one that does not."""

from __future__ import annotations

import copy
import json

import pytest
from fastapi.testclient import TestClient

from engine.chat_prompt import ChatMessage, ChatPromptBuilder, ChatPromptError
from engine.events import FinishEvent
from engine.prompt import PromptBuilder
from engine.torch_engine import TorchEngine
from server.openai_responses import ResponseHeader, full_response
from server.tool_calls import ToolStream, parse_tool_calls
from tests.server.gateway_helpers import chat

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
# A Hermes-style template that renders tools, for a model that has one (written for this test).
TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}"
    'Call one as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n{% endif %}'
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}</tool_call>"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.mark.parametrize(
    ("text", "content", "names"),
    [
        (CALL, None, ["get_weather"]),
        ("Let me check. " + CALL + CALL, "Let me check.", ["get_weather", "get_weather"]),
        ('{"name": "get_weather", "parameters": {"city": "Paris"}}', None, ["get_weather"]),
        ('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{\\"x\\": 1}"}]', None, ["a", "b"]),
        ("It is sunny in Paris.", "It is sunny in Paris.", []),
        ("<tool_call>{not json}</tool_call>", "<tool_call>{not json}</tool_call>", []),
        ('{"city": "Paris"}', '{"city": "Paris"}', []),
    ],
)
def test_parse_tool_calls(text: str, content: str | None, names: list[str]) -> None:
    got_content, calls = parse_tool_calls(text)
    assert got_content == content and [c.name for c in calls] == names
    for c in calls:
        assert isinstance(json.loads(c.arguments), dict)


def _stream(pieces: list[str]) -> tuple[str, list[str], str]:
    s = ToolStream()
    sent = "".join(s.feed(p) for p in pieces)
    rest, calls = s.finish()
    return sent, [c.name for c in calls], rest


def test_tool_stream_sends_content_and_holds_calls() -> None:
    text = "Let me check. " + CALL
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    sent, names, rest = _stream(pieces)
    assert sent == "Let me check. " and names == ["get_weather"] and rest == ""
    assert _stream(["It is ", "sunny", "."]) == ("It is sunny.", [], "")
    # held because it might have begun a call, then released whole at the end: nothing lost
    sent, names, rest = _stream(["a <t", "able> b"])
    assert sent + rest == "a <table> b" and names == []
    sent, names, rest = _stream(['{"name": "get_weather", ', '"arguments": {"city": "Rome"}}'])
    assert sent == "" and names == ["get_weather"] and rest == ""


def test_full_response_turns_calls_into_tool_calls() -> None:
    head = ResponseHeader.new("chat", "req-1", "m")
    final = FinishEvent(CALL, "stop", 10, 12, 1.0, 2.0)
    body = full_response(head, [final], [], None, None, tools=True)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {
        "city": "Paris"
    }
    plain = full_response(head, [final], [], None, None, tools=False)["choices"][0]
    assert plain["message"]["content"] == CALL and "tool_calls" not in plain["message"]


def test_a_template_with_tools_renders_them_and_the_turns(engine: TorchEngine) -> None:
    tok = copy.deepcopy(engine.tokenizer)
    tok.chat_template = TOOLS_TEMPLATE
    builder = ChatPromptBuilder(PromptBuilder(tok))
    assert builder.accepts_tools
    tools = [WEATHER]
    prompt = builder.build([ChatMessage("user", "Weather in Paris?")], None, tools)
    text = "".join(p.text for p in prompt.pieces)
    assert "get_weather" in text and "Weather in Paris?" in text
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
    }
    turns = [
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", {"tool_calls": [call]}),
        ChatMessage("tool", "sunny, 21 C", {"tool_call_id": "call_1"}),
    ]
    after = builder.build(turns, None, tools)
    rendered = after.pieces[0].text
    assert len(after.pieces) == 1 and "sunny, 21 C" in rendered and '"city": "Paris"' in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    smol = ChatPromptBuilder(engine.prompts)
    assert not smol.accepts_tools  # SmolLM2's template never renders tools
    with pytest.raises(ChatPromptError, match="does not accept tools"):
        smol.build([ChatMessage("user", "hi")], None, tools)


def test_the_embedded_model_refuses_tools_with_a_clear_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=chat("Weather in Paris?", tools=[WEATHER]))
    assert r.status_code == 400
    error = r.json()["error"]
    assert "does not accept tools" in error["message"] and error["code"] == "unsupported_parameter"
    turns = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]
    assert client.post("/v1/chat/completions", json={"messages": turns, "max_tokens": 3}).status_code == 400
    # offered nothing: with tool_choice none the tools are not given to the model
    ok = client.post("/v1/chat/completions", json=chat("Hi", tools=[WEATHER], tool_choice="none"))
    assert ok.status_code == 200, ok.text
    for bad, needle in (
        ({"tool_choice": "required", "tools": [WEATHER]}, "cannot be forced"),
        ({"tool_choice": "auto"}, "only allowed with tools"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools"),
    ):
        r = client.post("/v1/chat/completions", json=chat("Hi", **bad))
        assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
