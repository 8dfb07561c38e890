"""Collections belong to a tenant: each tenant sees its own names, and no other tenant's.

A collection is stored under `<name>.<tag>`, where the tag is derived one-way from the tenant's
server-side salt; requests without keys (the anonymous tenant) use the bare name. Names that clients
send are always public names (no dots), so no client can address another tenant's storage name, and
every name or message that goes back is public again. Another tenant's collection is simply absent:
404, never 403, so its existence does not leak.

The scope also remembers each tag's salt, so documents ingested by a tenant have their chunk caches
warmed under that tenant's salt (the one its questions look up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from retrieval.config import COLLECTION_NAME
from server.auth import principal_of
from server.errors import ApiError
from server.tenant_salts import tag_of


@dataclass(frozen=True)
class CollectionScope:
    salt: str

    @property
    def tag(self) -> str:
        return tag_of(self.salt)

    def storage(self, name: str) -> str:
        """The stored name of the caller's collection `name`; 404 for a name no collection can have
        (a stored name sent back is one: it must not reach another tenant's collection)."""
        if COLLECTION_NAME.match(name) is None:
            raise ApiError(404, f"collection {name!r} does not exist", "not_found")
        return f"{name}.{self.tag}" if self.tag else name

    def public(self, stored: str) -> str | None:
        """The caller's name for stored collection `stored`, or None when it is not the caller's."""
        base, _, tag = stored.partition(".")
        return base if tag == self.tag else None

    def owns(self, stored: str) -> bool:
        return self.public(stored) is not None


def scope_for(request: Request) -> CollectionScope:
    salt = principal_of(request).salt
    request.app.state.services.tenant_salts.remember(salt)
    return CollectionScope(salt)


ScopeDep = Annotated[CollectionScope, Depends(scope_for)]
