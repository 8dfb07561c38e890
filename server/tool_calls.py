"""Tool calls parsed from a model's output into OpenAI's `tool_calls`, whole or while streaming.

Recognised forms: Hermes / Qwen2.5 style `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
blocks (any number), and an output that is only a JSON object (or list of them) with `name` and
`arguments` (or Llama 3.1's `parameters`). Anything else is plain content. Text before the first
call stays the message's content.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # a JSON object's text, as OpenAI sends it

    def as_json(self, index: int, with_index: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        return {"index": index, **out} if with_index else out


def _call(obj: Any) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


def parse_tool_calls(text: str) -> tuple[str | None, list[ToolCall]]:
    """(content, calls); with no call recognised, (text, [])."""
    if _OPEN in text:
        head = text.split(_OPEN, 1)[0]
        calls = []
        for body in _BLOCK.findall(text):
            try:
                call = _call(json.loads(body))
            except ValueError:
                call = None
            if call is None:
                return text, []
            calls.append(call)
        return (head.strip() or None), calls
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            return text, []
        items = parsed if isinstance(parsed, list) else [parsed]
        found = [_call(x) for x in items]
        if items and all(c is not None for c in found):
            return None, [c for c in found if c is not None]
    return text, []


class ToolStream:
    """Streams content while the output cannot be a tool call; once it may be (it starts with `{` or
    `[`, or `<tool_call>` begins), holds the rest and parses it at the end."""

    def __init__(self) -> None:
        self.text = ""
        self.sent = 0
        self.holding = False

    def feed(self, delta: str) -> str:
        """The part of `delta` that can be sent as content now."""
        self.text += delta
        if not self.holding:
            rest = self.text[self.sent :]
            lead = self.text.lstrip()
            if lead[:1] in ("{", "["):
                self.holding = True
                return ""
            cut = rest.find("<")
            if cut >= 0 and (_OPEN.startswith(rest[cut:]) or rest[cut:].startswith(_OPEN)):
                self.sent += cut
                self.holding = True
                return rest[:cut]
            self.sent = len(self.text)
            return rest
        return ""

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(content still to send, calls) at the end of the output."""
        held = self.text[self.sent :]
        if not self.holding or not held:
            return held, []
        content, calls = parse_tool_calls(self.text)
        if not calls:
            return held, []
        sent_part = self.text[: self.sent].strip()
        tail = (content or "").strip()
        return (tail[len(sent_part) :] if tail.startswith(sent_part) else ""), calls
