"""Liveness fails when the engine is dead (its scheduler closed or its thread crashed), so the pod is
restarted; readiness names every state by a stable reason code and never shows exception text."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.blend.gate import GateConfig
from engine.config import EngineConfig
from engine.torch_engine import TorchEngine
from server.app import create_app
from server.settings import Settings

QUESTION = {"query": "What colour is the sky?", "documents": ["The sky is blue."], "max_tokens": 2}


class Crash(BaseException):
    """What no step handler catches: the scheduler's thread ends."""


def own_engine(model_dir: Path) -> TorchEngine:
    """An engine of this test's own (the session's shared one must stay alive)."""
    return TorchEngine(
        EngineConfig(model_dir=model_dir, dtype="float32", num_threads=2, blend_gate=GateConfig(False))
    )


def settings(tmp_path: Path, model_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path, model=str(model_dir), max_tokens_limit=8)


def test_a_closed_scheduler_fails_liveness_and_readiness(tmp_path: Path, model_dir: Path) -> None:
    engine = own_engine(model_dir)
    with TestClient(create_app(settings(tmp_path, model_dir), engine=engine)) as client:
        assert client.post("/generate", json=QUESTION).status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/ready").json()["status"] == "ready"
        assert engine.scheduler is not None
        engine.scheduler.close()
        health, ready = client.get("/health"), client.get("/ready")
        assert health.status_code == 503 and health.json() == {"status": "failed", "reason": "engine_dead"}
        assert ready.status_code == 503 and ready.json() == {"status": "failed", "reason": "engine_dead"}
        r = client.post("/generate", json=QUESTION)
        assert r.status_code == 503 and "retry-after" in r.headers


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crash itself
def test_a_crashed_scheduler_thread_fails_liveness(tmp_path: Path, model_dir: Path) -> None:
    engine = own_engine(model_dir)
    scheduler = engine.scheduler
    assert scheduler is not None

    def crash() -> object:
        raise Crash("the step died")

    with TestClient(create_app(settings(tmp_path, model_dir), engine=engine)) as client:
        assert client.get("/health").status_code == 200
        scheduler._step = crash  # type: ignore[method-assign,assignment]
        scheduler.run_background(lambda: None, "starts the thread")
        assert scheduler._thread is not None
        scheduler._thread.join(timeout=60)
        assert not scheduler._thread.is_alive()
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["reason"] == "engine_dead"
        ready = client.get("/ready")
        assert ready.status_code == 503 and "the step died" not in ready.text
    scheduler.close()


def test_a_failed_load_is_a_reason_code_without_exception_text(tmp_path: Path) -> None:
    empty = tmp_path / "no-model-here"
    empty.mkdir()
    app = create_app(Settings(data_dir=tmp_path / "data", model=str(empty)))
    with TestClient(app) as client:
        services = app.state.services
        deadline = time.monotonic() + 120
        while services.load_error is None and services.engine is None:
            assert time.monotonic() < deadline, "the load neither failed nor finished"
            time.sleep(0.2)
        assert services.load_error is not None  # the detail stays on the server (and in its log)
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json() == {"status": "failed", "reason": "load_failed"}
        assert str(empty) not in ready.text
        r = client.post("/generate", json=QUESTION)
        assert r.status_code == 503 and str(empty) not in r.text
        assert "failed to load" in r.json()["error"]["message"]
        assert client.get("/health").status_code == 200  # no engine is running, none died
