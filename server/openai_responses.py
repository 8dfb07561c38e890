"""Response objects and stream chunks of the OpenAI-compatible endpoints, as JSON-ready dicts.

`usage.prompt_tokens_details.cached_tokens` is always present, 0 included. RAG answers carry
`citations` (the retrieved chunks, in prompt order); a stream carries them in its first chunk. With
`n` > 1 the choices are indexed 0..n-1; usage counts the prompt once and every choice's tokens.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from engine.events import FinishEvent
from server.openai_echo import Echo, joined
from server.openai_logprobs import TextLogprobs, TokenTexts, chat_logprobs
from server.rag_context import Citation
from server.schemas import recompute_ratio
from server.tool_calls import parse_tool_calls

Kind = Literal["chat", "text"]


@dataclass(frozen=True)
class ResponseHeader:
    """What every object of one response shares."""

    kind: Kind
    id: str
    model: str
    created: int

    @staticmethod
    def new(kind: Kind, request_id: str, model: str) -> ResponseHeader:
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        return ResponseHeader(kind, f"{prefix}-{request_id}", model, int(time.time()))

    def base(self, chunk: bool) -> dict[str, Any]:
        obj = "chat.completion" if self.kind == "chat" else "text_completion"
        if chunk and self.kind == "chat":
            obj += ".chunk"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}


def finish_reason(final: FinishEvent) -> str:
    return "length" if final.finish_reason == "length" else "stop"


def usage(final: FinishEvent, more: list[FinishEvent] | None = None) -> dict[str, Any]:
    """Usage of `final`'s choice, plus the completion tokens of the request's other choices."""
    completion = final.completion_tokens + sum(f.completion_tokens for f in more or [])
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": final.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": final.extra_usage.get("cached_tokens", 0)},
        "recomputed_tokens": final.extra_usage.get("recomputed_tokens", 0),
        "recompute_ratio": recompute_ratio(final.extra_usage),
    }


def timings(final: FinishEvent, retrieve_ms: float | None) -> dict[str, float]:
    out = {"ttft_ms": final.ttft_ms, "total_ms": final.total_ms, **final.extra_timings}
    if retrieve_ms is not None:
        out["retrieve_ms"] = retrieve_ms
    return out


def citations_json(citations: list[Citation]) -> list[dict[str, Any]]:
    return [c.model_dump() for c in citations]


def choice_logprobs(
    head: ResponseHeader, final: FinishEvent, texts: TokenTexts | None
) -> dict[str, Any] | None:
    if final.logprobs is None or texts is None:
        return None
    if head.kind == "chat":
        return chat_logprobs(final.logprobs, texts)
    return TextLogprobs(texts).block([lp.token for lp in final.logprobs], final.logprobs)


def full_response(
    head: ResponseHeader,
    finals: list[FinishEvent],
    citations: list[Citation],
    retrieve_ms: float | None,
    texts: TokenTexts | None = None,
    tools: bool = False,
    echo: Echo | None = None,
) -> dict[str, Any]:
    """The whole answer; with `echo` each completion choice starts with the prompt (openai_echo.py)."""
    choices = []
    for index, final in enumerate(finals):
        choice: dict[str, Any] = {
            "index": index,
            "finish_reason": finish_reason(final),
            "logprobs": choice_logprobs(head, final, texts),
        }
        if head.kind == "chat":
            content, calls = parse_tool_calls(final.text) if tools else (final.text, [])
            choice["message"] = {"role": "assistant", "content": content}
            if calls:
                choice["message"]["tool_calls"] = [c.as_json(i) for i, c in enumerate(calls)]
                choice["finish_reason"] = "tool_calls"
        elif echo is not None:
            choice["text"] = echo.text + final.text
            if texts is not None and final.logprobs is not None:
                offsets = TextLogprobs(texts)
                prompt_block = echo.block(offsets)
                generated = offsets.block([lp.token for lp in final.logprobs], final.logprobs)
                choice["logprobs"] = joined(prompt_block, generated)
        else:
            choice["text"] = final.text
        choices.append(choice)
    out = {
        **head.base(chunk=False),
        "choices": choices,
        "usage": usage(finals[0], finals[1:]),
        "timings": timings(finals[0], retrieve_ms),
    }
    if citations:
        out["citations"] = citations_json(citations)
    return out


def stream_chunk(
    head: ResponseHeader,
    delta: dict[str, Any],
    reason: str | None = None,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One stream chunk; `delta` is the chat delta (role or content), or {"text": ...} for completions."""
    choice: dict[str, Any] = {"index": index, "finish_reason": reason, "logprobs": logprobs}
    if head.kind == "chat":
        choice["delta"] = delta
    else:
        choice["text"] = delta.get("text", "")
    return {**head.base(chunk=True), "choices": [choice]}


def text_delta(head: ResponseHeader, text: str) -> dict[str, str]:
    return {"content": text} if head.kind == "chat" else {"text": text}


def usage_chunk(head: ResponseHeader, finals: list[FinishEvent]) -> dict[str, Any]:
    return {**head.base(chunk=True), "choices": [], "usage": usage(finals[0], finals[1:])}


def sse_data(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {text}\n\n".encode()
