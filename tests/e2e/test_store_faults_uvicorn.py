"""A real server whose chunk caches live in a real Redis: faults there cost recomputation, not answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cache.conftest import RedisServer
from tests.e2e.server_process import running_server

DOCS = [
    "The Danube flows through ten countries, more than any other river in the world.",
    "The Volga is the longest river in Europe and flows into the Caspian Sea.",
    "The Rhine rises in the Swiss Alps and flows into the North Sea.",
]
BODY = {"query": "Which river flows into the Caspian Sea?", "documents": DOCS, "max_tokens": 12}


@pytest.fixture()
def redis_backed(model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, RedisServer]]:
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp_path / "data"),
        "RAGBLEND_DTYPE": "float32",
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_REDIS_URL": redis.url,
        "RAGBLEND_KV_MEMORY_BYTES": "0",  # every chunk cache must come from Redis
        "RAGBLEND_KV_DISK": "false",
    }
    try:
        with running_server(env, tmp_path / "server.log") as base:
            yield base, redis
    finally:
        redis.stop()


def _ask(base: str, mode: str) -> dict:
    r = httpx.post(f"{base}/generate", json={**BODY, "blend": {"mode": mode}}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _wait_for_keys(redis: RedisServer) -> None:
    deadline = time.monotonic() + 30
    while redis.client().dbsize() == 0:
        assert time.monotonic() < deadline, "no chunk cache reached Redis"
        time.sleep(0.2)


def _metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_redis_down_degrades_to_recompute_with_the_same_answer(redis_backed: tuple[str, RedisServer]) -> None:
    base, redis = redis_backed
    full = _ask(base, "full")
    _ask(base, "prefix")  # stores exact-prefix entries in Redis, in the background
    _wait_for_keys(redis)
    warm = _ask(base, "prefix")
    assert warm["usage"]["cached_tokens"] > 0, "entries should come back from Redis"
    assert warm["text"] == full["text"]

    redis.stop()
    down = _ask(base, "prefix")
    assert down["usage"]["cached_tokens"] == 0
    assert down["text"] == full["text"]
    assert _metric(base, "ragblend_kv_errors_total") > 0

    redis.start()
    _ask(base, "prefix")  # rewrites the entries once the store has reconnected
    _wait_for_keys(redis)
    for _ in range(20):
        again = _ask(base, "prefix")
        if again["usage"]["cached_tokens"] > 0:
            break
    assert again["usage"]["cached_tokens"] > 0, "the store should reconnect on its own"
    assert again["text"] == full["text"]
