"""What the routes share: settings, the engine (once loaded) and the request queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from cache.prometheus import register_store_metrics
from cache.store import ChunkStore
from cache.tiered import TieredStore
from engine.base import Engine
from engine.registry import create_engine
from engine.request_queue import RequestQueue
from retrieval.collections import CollectionManager
from server.settings import Settings
from server.tenant_salts import TenantSalts

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    queue: RequestQueue
    engine: Engine | None = None
    load_error: str | None = None
    collections: CollectionManager | None = None
    store: ChunkStore | None = None
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    extras: dict[str, object] = field(default_factory=dict)
    owns_engine: bool = False
    tenant_salts: TenantSalts = field(default_factory=TenantSalts)

    def close(self) -> None:
        """At shutdown, after the server has drained its requests: the engine's threads (when these
        services loaded it; an engine handed in belongs to its caller), the queue, the store."""
        if self.engine is not None and self.owns_engine:
            try:
                self.engine.close()
            except Exception:  # shutting down must go on whatever the engine says
                log.exception("engine did not close cleanly")
        self.queue.close()
        if self.store is not None:
            self.store.close()

    def load_engine(self) -> None:
        """Build the store and the engine (blocking: converts the embedded model on first start)."""
        try:
            if self.store is None:
                self.store = TieredStore(self.settings.store_config())
                register_store_metrics(self.store, self.metrics)
            self.engine = create_engine(self.settings.engine, self.settings.engine_config(), self.store)
            self.owns_engine = True
        except Exception as exc:
            log.exception("engine failed to load")
            self.load_error = f"{type(exc).__name__}: {exc}"
