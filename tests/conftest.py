"""Fixtures shared by the whole suite: the real embedded model, loaded once per session."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# Nothing may be downloaded: models come from installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The blend correctness gate costs seconds at every model load; servers the suite starts skip it
# unless a test turns it on (tests/engine/blend/test_gate.py, tests/server/test_blend_gate.py).
os.environ.setdefault("RAGBLEND_BLEND_GATE", "false")

import pytest
import torch

from engine.blend.options import GateConfig
from engine.config import EngineConfig
from engine.torch_engine import TorchEngine
from server.settings import Settings
from tests.isolation import suite_audit
from tests.postgres_server import PostgresServer, postgres_server

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# Every file this process opens from here on is checked: the suite reads nothing outside the repository.
AUDIT = suite_audit()
sys.addaudithook(AUDIT.hook)


@pytest.fixture(autouse=True)
def _reads_stay_in_the_repository() -> Iterator[None]:
    start = len(AUDIT.violations)
    yield
    opened = sorted(set(AUDIT.violations[start:]))
    if opened:
        pytest.fail(f"the test opened files outside the repository: {opened}", pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # what collection or a session fixture opened is not seen by the per-test check
    if AUDIT.violations and exitstatus == 0:
        print(f"\nfiles opened outside the repository: {sorted(set(AUDIT.violations))}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_runtest_setup(item: pytest.Item) -> None:
    # A vLLM test without vLLM must fail, not wait for a backend that can never start (or be skipped).
    if item.get_closest_marker("vllm") and importlib.util.find_spec("vllm") is None:
        pytest.fail("this test needs the vllm extra: `make test` runs it in .venv-vllm", pytrace=False)
    if item.get_closest_marker("cuda") and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and torch sees none here (torch.cuda.is_available() is False)")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The embedded model, converted once into the default data dir (as `make serve` does)."""
    return Settings().model_dir()


@pytest.fixture(scope="session")
def engine(model_dir: Path) -> TorchEngine:
    # Pinned so results do not depend on the speed probe; bf16 is covered by explicit tests.
    config = EngineConfig(model_dir=model_dir, dtype="float32", num_threads=2, blend_gate=GateConfig(False))
    return TorchEngine(config)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real Postgres with pgvector for the session (each test takes a fresh database of it)."""
    with postgres_server() as server:
        yield server
