"""One streamed chat completion timed from the client, for load tests of the OpenAI-compatible route.

Takes the same payloads as /generate (`query`, `documents` or `collection` + `top_k`, `blend`,
`max_tokens`) and sends them as a chat request: the query as the user message, the RAG options as
extra body fields, `stream_options.include_usage` for the final usage chunk. TTFT is the first chunk
with content, inter-token latency the gaps between content chunks; cached tokens come from
`usage.prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bench.load_client import Payload, RequestRecord

RAG_FIELDS = ("documents", "collection", "top_k", "blend", "selection")


def chat_body(payload: Payload) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": payload.get("model", "ragblend"),
        "messages": [{"role": "user", "content": payload["query"]}],
        "max_tokens": payload.get("max_tokens", 16),
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body.update({k: payload[k] for k in RAG_FIELDS if k in payload})
    return body


def _take_usage(rec: RequestRecord, usage: dict[str, Any]) -> None:
    rec.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    rec.completion_tokens = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    rec.cached_tokens = int(details.get("cached_tokens") or 0)


async def stream_chat(client: httpx.AsyncClient, url: str, payload: Payload, rec: RequestRecord) -> None:
    """POST `payload` as a streamed chat completion to `url` and fill `rec` as chunks arrive."""
    start = time.perf_counter()
    last: float | None = None
    try:
        async with client.stream("POST", url, json=chat_body(payload)) as resp:
            rec.status = resp.status_code
            if resp.status_code != 200:
                body = await resp.aread()
                rec.error = f"http {resp.status_code}: {body[:200]!r}"
                return
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    rec.ok = rec.error is None and rec.finish_reason is not None
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    rec.error = f"stream error: {chunk['error']}"[:300]
                    continue
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        now = time.perf_counter()
                        if last is None:
                            rec.ttft_ms = (now - start) * 1000
                        else:
                            rec.itl_ms.append((now - last) * 1000)
                        last = now
                    if choice.get("finish_reason"):
                        rec.finish_reason = choice["finish_reason"]
                if chunk.get("usage"):
                    _take_usage(rec, chunk["usage"])
        if not rec.ok and rec.error is None:
            rec.error = "stream ended without [DONE]"
    except httpx.HTTPError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        rec.e2e_ms = (time.perf_counter() - start) * 1000
        if rec.ok and rec.ttft_ms is None:
            rec.ttft_ms = rec.e2e_ms
