"""OpenAI's error shape on the OpenAI-compatible routes.

Every error of this server is `{"error": {"type", "message"}}`; on /v1/chat/completions,
/v1/completions, /v1/models, /v1/embeddings, /tokenize and /detokenize this middleware rewrites it,
whoever raised it (validation, auth, body limit, the route), into OpenAI's
`{"error": {"message", "type", "param", "code"}}`: `type` is OpenAI's category for the status, `code`
our own error type, and invalid fields answer 400 (as OpenAI does) rather than 422.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPENAI_PREFIXES = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/embeddings",
    "/tokenize",
    "/detokenize",
)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPENAI_PREFIXES)


def openai_error(status: int, message: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _reshape(status: int, body: bytes) -> tuple[int, bytes]:
    try:
        parsed = json.loads(body)
        error = parsed["error"]
        message, code = str(error["message"]), error.get("type")
    except (ValueError, KeyError, TypeError):
        return status, body
    fields = error.get("fields") or []
    param = fields[0] if fields and isinstance(fields[0], str) and fields[0] else None
    if status == 422:
        status = 400
    return status, json.dumps(openai_error(status, message, code, param)).encode()


class OpenAIErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_openai_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def reshaping_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                content_type = MutableHeaders(scope=message).get("content-type", "")
                if message["status"] >= 400 and content_type.startswith("application/json"):
                    held = message  # an error body: keep it until it is whole
                    return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = _reshape(held["status"], b"".join(chunks))
            start = {**held, "status": status}
            MutableHeaders(scope=start)["content-length"] = str(len(body))
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshaping_send)
