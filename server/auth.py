"""Authentication and per-key rate limits, as ASGI middleware in front of every route.

When keys are configured every route needs one except /health, /ready and the web console's static
page and assets (so /metrics, the API docs and the OpenAPI schema do too). The key comes as
`Authorization: Bearer <key>` or `X-API-Key`. The caller's `Principal` (key name, tenant,
server-derived salt) is left in the request state.
"""

from __future__ import annotations

import json

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api_keys import ANONYMOUS, KeyRing, Principal
from server.errors import error_body
from server.rate_limit import RateLimiter

PUBLIC_PATHS = frozenset({"/health", "/ready"})
# The web console's page (`/`) and assets hold no data; the page asks for a key when the API needs one.
CONSOLE_PATH, CONSOLE_ASSETS = "/", "/console/"


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path == CONSOLE_PATH or path.startswith(CONSOLE_ASSETS)


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return key or None


def principal_of(request: Request) -> Principal:
    """Who the request acts for (the anonymous principal when no keys are configured)."""
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else ANONYMOUS


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyRing, limiter: RateLimiter) -> None:
        self.app, self.keys, self.limiter = app, keys, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys.enabled or is_public(scope["path"]):
            if scope["type"] == "http":
                scope.setdefault("state", {})["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        key = presented_key(headers)
        if key is None:
            message = "missing API key: send it as 'Authorization: Bearer <key>' or in 'X-API-Key'"
            await _reject(send, 401, "authentication_error", message, {"WWW-Authenticate": "Bearer"})
            return
        principal = self.keys.authenticate(key)
        if principal is None:
            await _reject(
                send, 401, "authentication_error", "invalid API key", {"WWW-Authenticate": "Bearer"}
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        retry_after = self.limiter.check(principal.key_name, principal.requests_per_minute)
        if retry_after:
            limit = principal.requests_per_minute
            message = (
                f"rate limit of {limit:g} requests per minute exceeded for API key "
                f"{principal.key_name!r}; retry after {retry_after} s"
            )
            await _reject(send, 429, "rate_limit_exceeded", message, {"Retry-After": str(retry_after)})
            return
        await self.app(scope, receive, send)


async def _reject(send: Send, status: int, kind: str, message: str, extra: dict[str, str]) -> None:
    body = json.dumps(error_body(kind, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
