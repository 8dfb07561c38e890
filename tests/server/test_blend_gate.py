"""The blend default and its correctness gate as a client sees them: /ready, /metrics, usage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.blend.options import GateConfig
from engine.config import EngineConfig
from engine.torch_engine import TorchEngine
from server.app import create_app
from server.settings import Settings

DOCS = [
    "The Rhine rises in the Swiss Alps and flows north to the North Sea.",
    "The Danube flows east from the Black Forest to the Black Sea.",
    "The Rhone leaves Lake Geneva and reaches the Mediterranean near Arles.",
]


@pytest.fixture(scope="module")
def failing_engine(model_dir: Path) -> TorchEngine:
    """An engine whose default mode cannot pass its gate (no drop at all allowed, no higher ratio)."""
    gate = GateConfig(max_drop=-1.0, fallback_ratios=(), prompts=1, answer_tokens=4)
    return TorchEngine(EngineConfig(model_dir=model_dir, dtype="float32", num_threads=2, blend_gate=gate))


@pytest.fixture()
def failing_client(settings: Settings, failing_engine: TorchEngine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=failing_engine)) as c:
        yield c


def test_failed_gate_falls_back_to_full_visibly(failing_client: TestClient) -> None:
    ready = failing_client.get("/ready").json()
    assert ready["blend"]["default_mode"] == "full"
    assert ready["blend"]["gate"]["passed"] is False and "full" in ready["blend"]["gate"]["reason"]
    metrics = failing_client.get("/metrics").text
    assert 'ragblend_blend_gate_passed{default_mode="full"} 0.0' in metrics
    body = {"query": "Which river reaches the Mediterranean?", "documents": DOCS, "max_tokens": 4}
    failing_client.post("/generate", json=body)
    usage = failing_client.post("/generate", json=body).json()["usage"]
    assert usage["cached_tokens"] == 0  # no mode named: the gate's choice, a full prefill
    chosen = {**body, "blend": {"mode": "probe"}}  # a request may still choose a mode
    failing_client.post("/generate", json=chosen)  # full stores no chunk caches: this one does
    assert failing_client.post("/generate", json=chosen).json()["usage"]["cached_tokens"] > 0


def test_default_blend_reports_the_ratio_used(client: TestClient) -> None:
    ready = client.get("/ready").json()
    assert ready["blend"]["default_mode"] == "probe" and ready["blend"]["default_ratio"] == 0.15
    # a system prompt of its own, so the shared engine's cache for the default prefix stays cold
    system = "Answer from the river notes only."
    body = {
        "query": "Which river reaches the Mediterranean?",
        "documents": DOCS,
        "max_tokens": 4,
        "system": system,
    }
    client.post("/generate", json=body)
    usage = client.post("/generate", json={**body, "documents": DOCS[::-1]}).json()["usage"]
    assert usage["moved_tokens"] > 0 and 0.1 <= usage["recompute_ratio"] <= 0.2
    assert usage["recompute_ratio"] == round(usage["recomputed_tokens"] / usage["moved_tokens"], 4)
    chat = {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "Which river reaches the Mediterranean?"},
        ],
        "documents": DOCS[1:] + DOCS[:1],
        "blend": {"ratio": 0.3},
        "max_tokens": 4,
    }
    usage = client.post("/v1/chat/completions", json=chat).json()["usage"]
    assert 0.25 <= usage["recompute_ratio"] <= 0.35
    assert "ragblend_recompute_ratio_count" in client.get("/metrics").text
