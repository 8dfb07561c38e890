from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.torch_engine import TorchEngine
from server.app import create_app
from server.settings import Settings


@pytest.fixture()
def settings(tmp_path: Path, model_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path, model=str(model_dir), max_tokens_limit=64, max_body_bytes=200_000)


@pytest.fixture()
def client(settings: Settings, engine: TorchEngine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=engine)) as c:
        yield c
