"""What the routes share: settings, the engine (once loaded) and the request queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine.base import Engine
from engine.registry import create_engine
from engine.request_queue import RequestQueue
from server.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    queue: RequestQueue
    engine: Engine | None = None
    load_error: str | None = None
    extras: dict[str, object] = field(default_factory=dict)

    def load_engine(self) -> None:
        """Build the engine (blocking: converts the embedded model on first start)."""
        try:
            self.engine = create_engine(self.settings.engine, self.settings.engine_config())
        except Exception as exc:
            log.exception("engine failed to load")
            self.load_error = f"{type(exc).__name__}: {exc}"
