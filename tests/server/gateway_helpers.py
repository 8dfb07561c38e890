"""Keys and apps for the gateway tests: a real engine behind an app with API keys configured."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from server.api_keys import ApiKeySpec, hash_key
from server.settings import Settings

KEYS = {
    "alpha": "sk-alpha-0123456789",
    "beta": "sk-beta-9876543210",
    "slow": "sk-slow-5555",
    "one": "sk-one-1",
}


def key_specs() -> list[ApiKeySpec]:
    return [
        ApiKeySpec(name="alpha", sha256=hash_key(KEYS["alpha"]), tenant="acme"),
        ApiKeySpec(name="beta", sha256=hash_key(KEYS["beta"]), tenant="globex"),
        ApiKeySpec(name="slow", sha256=hash_key(KEYS["slow"]), tenant="acme", requests_per_minute=2),
        ApiKeySpec(name="one", sha256=hash_key(KEYS["one"]), tenant="acme", max_streams=1),
    ]


def keyed_settings(data_dir: Path, model_dir: Path, **overrides: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        model=str(model_dir),
        max_tokens_limit=64,
        max_body_bytes=200_000,
        api_keys=key_specs(),
        # A fresh secret per app: its tenants' salts are new, so nothing cached by an earlier test of
        # this session (the engine and its store are shared) is visible to them.
        tenant_secret=f"test-secret-{uuid.uuid4().hex}",
        **overrides,
    )


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0, **extra}
