"""Fixtures shared by the whole suite: the real embedded model, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

# Nothing may be downloaded: models come from installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

from engine.config import EngineConfig
from engine.torch_engine import TorchEngine
from server.settings import Settings

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The embedded model, converted once into the default data dir (as `make serve` does)."""
    return Settings().model_dir()


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> TorchEngine:
    # Pinned so results do not depend on the speed probe; bf16 is covered by explicit tests.
    return TorchEngine(EngineConfig(model_dir=model_dir, dtype="float32", num_threads=2))


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
