"""What `docker compose up` runs, run natively: the README's quick-start requests work against it,
Redis runs as a cache, the image's healthcheck passes, and a second replica finds the chunk
caches the first one computed, through Redis."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
import redis

from tests.deploy.compose_env import DOCKER, ROOT, final_stage
from tests.deploy.kustomize_build import DEPLOY, build, find
from tests.deploy.native_stack import NativeStack, free_port

QUICKSTART = "### Quick start with docker compose"


def quickstart_requests() -> list[tuple[str, dict[str, Any] | None]]:
    """(path, JSON body or None) of each curl in the README's compose quick start."""
    text = (ROOT / "README.md").read_text()
    block = text.split(QUICKSTART, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    out = []
    for command in block.split("curl ")[1:]:
        url = re.search(r"localhost:8000(/\S*)", command)
        assert url, command
        body = re.search(r"-d '(.*?)'", command, re.DOTALL)
        out.append((url.group(1), json.loads(body.group(1)) if body else None))
    return out


def test_readme_quickstart_requests_work(gateway: str) -> None:
    requests = quickstart_requests()
    assert [path for path, _ in requests] == ["/health", "/ready", "/generate"]
    for path, body in requests:
        if body is None:
            resp = httpx.get(gateway + path, timeout=30)
        else:
            resp = httpx.post(gateway + path, json=body, timeout=300)
        assert resp.status_code == 200, (path, resp.text)
        data = resp.json()
        if path == "/health":
            assert data == {"status": "ok"}
        elif path == "/ready":
            assert data["status"] == "ready" and data["engine"] == "torch"
        else:
            assert body is not None and body["documents"]
            assert isinstance(data["text"], str) and data["finish_reason"] in {"stop", "length"}
            assert 0 < data["usage"]["completion_tokens"] <= body["max_tokens"]
            assert data["usage"]["prompt_tokens"] > sum(len(d.split()) for d in body["documents"])


def test_redis_runs_as_compose_configures_it(native_stack: NativeStack) -> None:
    with pytest.raises(redis.AuthenticationError):  # no password, no access
        redis.Redis(port=native_stack.redis_port).ping()
    client = redis.Redis(
        port=native_stack.redis_port, password=native_stack.redis_password, decode_responses=True
    )
    config = client.config_get("*")
    assert config["save"] == ""
    assert config["appendonly"] == "no"
    assert config["maxmemory-policy"] == "allkeys-lru"
    assert int(str(config["maxmemory"])) == 2 << 30
    client.close()


def test_image_healthcheck_command_tracks_readiness(gateway: str) -> None:
    health = next(args for word, args in final_stage(DOCKER / "Dockerfile.cpu") if word == "HEALTHCHECK")
    command = json.loads(health.split(" CMD ", 1)[1])
    assert command[0] == "python"
    run = [sys.executable, *command[1:]]
    port = gateway.rsplit(":", 1)[1]
    ok = subprocess.run(run, env={"RAGBLEND_PORT": port}, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(run, env={"RAGBLEND_PORT": str(free_port())}, capture_output=True, timeout=30)
    assert down.returncode != 0


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def kv_metric(metrics: str, name: str, tier: str | None = None) -> float:
    labels = "" if tier is None else f'\\{{tier="{tier}"\\}}'
    m = re.search(rf"^ragblend_kv_{name}{labels} (\S+)$", metrics, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def scrape(base: str) -> str:
    return httpx.get(f"{base}/metrics", timeout=30).text


def test_a_second_replica_reuses_chunk_caches_through_redis(native_stack: NativeStack) -> None:
    """Two replicas as the Kubernetes manifests run them: compose's environment plus the pinned
    dtype of the ConfigMap (with "auto" each replica times its own choice, and they can differ) and
    the tenant secret of the Secret that every pod reads (cache entries are tagged with a key
    derived from it, so replicas share caches only when they share it)."""
    dtype = find(build(DEPLOY / "base"), "ConfigMap")["data"]["RAGBLEND_DTYPE"]
    assert dtype != "auto"
    pod_env = {"RAGBLEND_DTYPE": dtype, "RAGBLEND_TENANT_SECRET": uuid.uuid4().hex}
    gateway = native_stack.start_gateway("replica-a", pod_env)
    client = redis.Redis(port=native_stack.redis_port, password=native_stack.redis_password)
    # Fresh text, so no earlier test left caches of it anywhere.
    nonce = uuid.uuid4().hex[:8]
    body = {
        "query": "Which river flows through the city?",
        "documents": [
            f"Report {nonce}: the city of Lyon lies where the Rhone meets the Saone.",
            f"Note {nonce}: the old town has Renaissance houses and covered passages.",
        ],
        "max_tokens": 4,
        # named: compose runs the correctness gate, which sends requests that name no mode to
        # `full` (no chunk caches) on the embedded model
        "blend": {"mode": "probe"},
    }
    writes_before = kv_metric(scrape(gateway), "writes_total", "redis")
    first = httpx.post(f"{gateway}/generate", json=body, timeout=300).json()
    # at most the system prefix, which earlier requests cached; the documents are new
    first_cached = first["usage"]["cached_tokens"]

    # Write-back to Redis happens in the background, after the answer: wait until both documents'
    # entries are written and nothing is pending.
    def written() -> bool:
        metrics = scrape(gateway)
        done = kv_metric(metrics, "writes_total", "redis") >= writes_before + 2
        return done and kv_metric(metrics, "pending_writes") == 0

    wait_for(written, 120, "the first replica's chunk caches in Redis")
    assert client.dbsize() > 0
    kv_dir = native_stack.tmp / "replica-a" / "kv"
    wait_for(lambda: any(p.is_file() for p in kv_dir.rglob("*")), 60, "the disk tier in the kv volume")

    replica = native_stack.start_gateway("replica-b", pod_env)
    second = httpx.post(f"{replica}/generate", json=body, timeout=300).json()
    redis_lines = [ln for ln in scrape(replica).splitlines() if 'tier="redis"' in ln and "_total" in ln]
    # the documents came from Redis (this replica never saw them); the question is never cached
    assert first_cached < second["usage"]["cached_tokens"] < second["usage"]["prompt_tokens"], (
        second["usage"],
        redis_lines,
    )
    assert kv_metric(scrape(replica), "hits_total", "redis") > 0
    client.close()
