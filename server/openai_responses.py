"""Response objects and stream chunks of the OpenAI-compatible endpoints, as JSON-ready dicts.

`usage.prompt_tokens_details.cached_tokens` is always present, 0 included. RAG answers carry
`citations` (the retrieved chunks, in prompt order); a stream carries them in its first chunk.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from engine.events import FinishEvent
from server.rag_context import Citation
from server.schemas import recompute_ratio

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


def usage(final: FinishEvent) -> dict[str, Any]:
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.completion_tokens,
        "total_tokens": final.prompt_tokens + final.completion_tokens,
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


def full_response(
    head: ResponseHeader, final: FinishEvent, citations: list[Citation], retrieve_ms: float | None
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason(final), "logprobs": None}
    if head.kind == "chat":
        choice["message"] = {"role": "assistant", "content": final.text}
    else:
        choice["text"] = final.text
    out = {
        **head.base(chunk=False),
        "choices": [choice],
        "usage": usage(final),
        "timings": timings(final, retrieve_ms),
    }
    if citations:
        out["citations"] = citations_json(citations)
    return out


def stream_chunk(head: ResponseHeader, delta: dict[str, str], reason: str | None = None) -> dict[str, Any]:
    """One stream chunk; `delta` is the chat delta (role or content), or {"text": ...} for completions."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
    if head.kind == "chat":
        choice["delta"] = delta
    else:
        choice["text"] = delta.get("text", "")
    return {**head.base(chunk=True), "choices": [choice]}


def text_delta(head: ResponseHeader, text: str) -> dict[str, str]:
    return {"content": text} if head.kind == "chat" else {"text": text}


def usage_chunk(head: ResponseHeader, final: FinishEvent) -> dict[str, Any]:
    return {**head.base(chunk=True), "choices": [], "usage": usage(final)}


def sse_data(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {text}\n\n".encode()
