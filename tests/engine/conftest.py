"""Schedulers made for a test are closed after it, even when it fails (no engine thread outlives it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine.scheduler import Scheduler
from engine.torch_engine import TorchEngine
from tests.engine.scheduling import make_scheduler

SchedulerFactory = Callable[..., Scheduler]


@pytest.fixture
def new_scheduler(engine: TorchEngine) -> Iterator[SchedulerFactory]:
    made: list[Scheduler] = []

    def make(**cfg: Any) -> Scheduler:
        made.append(make_scheduler(engine, **cfg))
        return made[-1]

    yield make
    for scheduler in made:
        scheduler.close()
