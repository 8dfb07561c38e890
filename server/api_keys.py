"""API keys: configured as SHA-256 hashes, checked in constant time, each bound to a tenant.

A tenant's cache salt is derived here, on the server, as an HMAC of the tenant name under a server
secret: a client can neither choose nor learn another tenant's salt, so tenants never share chunk
cache entries.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ApiKeySpec(BaseModel):
    """One configured key (RAGBLEND_API_KEYS is a JSON list of these)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="shown in logs and metrics, never the key")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256 of the key")
    tenant: str = Field(min_length=1, max_length=128)
    requests_per_minute: float | None = Field(None, gt=0)
    max_streams: int | None = Field(None, gt=0, description="concurrent streamed responses")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for. Without configured keys every request is the anonymous principal."""

    key_name: str
    tenant: str
    salt: str
    requests_per_minute: float | None = None
    max_streams: int | None = None


ANONYMOUS = Principal(key_name="", tenant="", salt="")


def hash_key(key: str) -> str:
    """The value to configure for `key` (hex SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()


def tenant_salt(secret: bytes, tenant: str) -> str:
    return hmac.new(secret, tenant.encode(), hashlib.sha256).hexdigest()


def load_tenant_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, or one generated once and kept in the data dir (mode 0600).

    Replicas that share a Redis tier must share the secret (set RAGBLEND_TENANT_SECRET), or each
    one salts the same tenant differently and they stop sharing that tenant's caches.
    """
    if configured:
        return configured.encode()
    path = data_dir / "tenant_secret"
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tenant_secret.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        os.replace(tmp, path)
    return path.read_text().strip().encode()


class KeyRing:
    """The configured keys. `authenticate` costs the same whichever key matches, or none."""

    def __init__(self, specs: list[ApiKeySpec], secret: bytes) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("api_keys: key names must be unique")
        self._entries = [(bytes.fromhex(s.sha256), s) for s in specs]
        self._secret = secret

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def salt_for(self, tenant: str) -> str:
        return tenant_salt(self._secret, tenant)

    def authenticate(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode()).digest()
        match: ApiKeySpec | None = None
        # Every configured hash is compared, with no early exit, so timing does not reveal which
        # key (or how many keys) came close.
        for expected, spec in self._entries:
            if hmac.compare_digest(digest, expected) and match is None:
                match = spec
        if match is None:
            return None
        return Principal(
            key_name=match.name,
            tenant=match.tenant,
            salt=self.salt_for(match.tenant),
            requests_per_minute=match.requests_per_minute,
            max_streams=match.max_streams,
        )
