"""RAGBLEND_METRICS_PORT: a real server with API keys answers /metrics without a key on its metrics
port only, while the API port keeps requiring one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from server.api_keys import hash_key
from tests.e2e.server_process import free_port, running_server

KEY = "sk-metrics-port-test"


def test_the_metrics_port_serves_metrics_alone_without_a_key(model_dir: Path, tmp_path: Path) -> None:
    metrics_port = free_port()
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp_path),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_API_KEYS": json.dumps([{"name": "t", "sha256": hash_key(KEY), "tenant": "acme"}]),
        "RAGBLEND_METRICS_PORT": str(metrics_port),
    }
    with running_server(env, tmp_path / "server.log") as base:
        assert httpx.get(f"{base}/metrics").status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        body = {"query": "Name a colour.", "documents": ["The sky is blue."], "max_tokens": 2}
        assert httpx.post(f"{base}/generate", json=body, headers=auth, timeout=120).status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped.status_code == 200
        assert "ragblend_kv_hits_total" in scraped.text
        # the same registry as the API port's /metrics
        assert httpx.get(f"{base}/metrics", headers=auth).text.count("ragblend_kv_hits_total") == (
            scraped.text.count("ragblend_kv_hits_total")
        )
        for path in ("/generate", "/v1/collections", "/ready", "/"):
            assert httpx.get(f"http://127.0.0.1:{metrics_port}{path}").status_code == 404
        assert httpx.post(f"http://127.0.0.1:{metrics_port}/generate", json=body).status_code == 404
