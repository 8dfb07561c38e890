"""The ingestion hook that warms chunk caches: each committed chunk gets its KV cache computed and
stored, so the first question that retrieves it blends instead of prefilling."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from retrieval.collections import ChunksHook
from retrieval.records import StoredChunk
from server.services import Services

log = logging.getLogger(__name__)


def chunk_warmup_hook(services: Services) -> ChunksHook:
    """A hook for `CollectionManager.on_chunks_ingested`. Caches are stored under the salt of the
    tenant that owns the collection, the one its questions look them up with."""

    def warm(collection: str, chunks: Sequence[StoredChunk]) -> None:
        engine = services.engine
        chunk_kv = engine.chunk_kv if engine is not None else None
        if not services.settings.retrieval_precompute_kv or chunk_kv is None:
            return
        salt = services.tenant_salts.salt_for(collection)
        if salt is None:  # the owner's salt is not known to this process: warming would miss anyway
            log.info("collection %s: owner's salt unknown here; chunk caches left cold", collection)
            return
        texts = [c.text for c in chunks]
        # At the backend's background priority: the model work yields to every user's request.
        report = chunk_kv.warm_up(texts, salt)
        log.info(
            "collection %s: %d chunk caches computed (%d tokens, %.2f s), %d already warm",
            collection,
            report.computed,
            report.tokens,
            report.seconds,
            report.already_warm,
        )

    return warm
