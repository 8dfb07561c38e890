"""Tenant tags: the one-way names of tenants' salts that tag their stored collections."""

from __future__ import annotations

import hashlib
import threading

TAG_CHARS = 16


def tag_of(salt: str) -> str:
    """The storage tag of the tenant whose salt is `salt` ('' for the anonymous tenant)."""
    return hashlib.sha256(salt.encode()).hexdigest()[:TAG_CHARS] if salt else ""


class TenantSalts:
    """Salts seen per tag, for work that runs after the request (ingestion warm-up)."""

    def __init__(self) -> None:
        self._by_tag: dict[str, str] = {}
        self._lock = threading.Lock()

    def remember(self, salt: str) -> None:
        if salt:
            with self._lock:
                self._by_tag[tag_of(salt)] = salt

    def salt_for(self, stored: str) -> str | None:
        """The salt of the tenant owning stored collection `stored` ('' for anonymous, None unknown)."""
        _, _, tag = stored.partition(".")
        if not tag:
            return ""
        with self._lock:
            return self._by_tag.get(tag)
