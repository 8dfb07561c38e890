"""The compose stack run natively (redis-server and one gateway), shared by the tests that need it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.native_stack import NativeStack


@pytest.fixture(scope="session")
def native_stack(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[NativeStack]:
    stack = NativeStack(tmp=tmp_path_factory.mktemp("compose"), model_dir=model_dir)
    try:
        stack.start_redis()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def gateway(native_stack: NativeStack) -> str:
    """Base URL of the compose `gateway` service, started natively."""
    return native_stack.start_gateway("gateway")
