"""API keys: 401 without or with a wrong key, public health routes, constant-time checks, 429s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import server.api_keys as api_keys
from engine.torch_engine import TorchEngine
from server.api_keys import KeyRing, hash_key
from server.app import create_app
from tests.server.gateway_helpers import KEYS, bearer, chat, key_specs, keyed_settings


@pytest.fixture()
def keyed(tmp_path: Path, model_dir: Path, engine: TorchEngine) -> Iterator[TestClient]:
    with TestClient(create_app(keyed_settings(tmp_path, model_dir), engine=engine)) as c:
        yield c


def test_without_configured_keys_no_key_is_needed(client: TestClient) -> None:
    assert client.get("/v1/models").status_code == 200
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/models"), ("GET", "/metrics"), ("POST", "/generate")]
)
def test_missing_key_is_401_on_every_route(keyed: TestClient, method: str, path: str) -> None:
    r = keyed.request(method, path, json={"query": "hi"} if method == "POST" else None)
    assert r.status_code == 401
    assert "missing API key" in r.json()["error"]["message"]
    assert r.headers["www-authenticate"] == "Bearer"


def test_health_and_ready_stay_public(keyed: TestClient) -> None:
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/ready").status_code == 200


def test_wrong_key_is_401_in_openai_shape(keyed: TestClient) -> None:
    r = keyed.get("/v1/models", headers={"Authorization": "Bearer sk-not-a-key"})
    assert r.status_code == 401
    error = r.json()["error"]
    assert error == {
        "message": "invalid API key",
        "type": "authentication_error",
        "param": None,
        "code": "authentication_error",
    }


def test_bearer_and_x_api_key_both_work(keyed: TestClient) -> None:
    assert keyed.get("/v1/models", headers=bearer("alpha")).status_code == 200
    assert keyed.get("/metrics", headers={"X-API-Key": KEYS["beta"]}).status_code == 200


def test_every_configured_hash_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = api_keys.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        nonlocal calls
        calls += 1
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", counting)
    ring = KeyRing(key_specs(), b"secret")
    for presented, expect in [(KEYS["alpha"], "alpha"), (KEYS["one"], "one"), ("sk-wrong", None)]:
        calls = 0
        found = ring.authenticate(presented)
        assert (found.key_name if found else None) == expect
        assert calls == len(key_specs())


def test_salts_are_derived_from_the_tenant_and_the_secret() -> None:
    ring = KeyRing(key_specs(), b"secret")
    a, a_again, b = (ring.authenticate(KEYS[n]) for n in ("alpha", "slow", "beta"))
    assert a and a_again and b
    assert a.salt == a_again.salt != b.salt  # same tenant, same salt; other tenant, another one
    assert KeyRing(key_specs(), b"other").authenticate(KEYS["alpha"]).salt != a.salt  # type: ignore[union-attr]


def test_duplicate_key_names_are_refused() -> None:
    spec = key_specs()[0]
    with pytest.raises(ValueError, match="unique"):
        KeyRing([spec, spec], b"s")


def test_rate_limit_answers_429_with_retry_after(keyed: TestClient) -> None:
    assert keyed.get("/v1/models", headers=bearer("slow")).status_code == 200
    assert keyed.get("/v1/models", headers=bearer("slow")).status_code == 200
    r = keyed.get("/v1/models", headers=bearer("slow"))
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert "2 requests per minute" in r.json()["error"]["message"]
    assert keyed.get("/v1/models", headers=bearer("alpha")).status_code == 200  # other keys unaffected


def test_concurrent_streams_are_capped_per_key(keyed: TestClient) -> None:
    gateway = keyed.app.state.gateway  # type: ignore[attr-defined]
    principal = KeyRing(key_specs(), b"x").authenticate(KEYS["one"])
    assert principal is not None
    held = gateway.streams.acquire(principal)  # a stream of this key is open
    r = keyed.post("/v1/chat/completions", json=chat("hi", stream=True), headers=bearer("one"))
    assert r.status_code == 429
    assert "concurrent streams" in r.json()["error"]["message"]
    assert keyed.post("/v1/chat/completions", json=chat("hi"), headers=bearer("one")).status_code == 200
    held.release()
    r = keyed.post("/v1/chat/completions", json=chat("hi", stream=True), headers=bearer("one"))
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    assert gateway.streams.open_streams("one") == 0


def test_oversized_body_is_413_after_auth(keyed: TestClient) -> None:
    big = chat("x" * 300_000)
    assert keyed.post("/v1/chat/completions", json=big).status_code == 401
    r = keyed.post("/v1/chat/completions", json=big, headers=bearer("alpha"))
    assert r.status_code == 413
    assert "200000 bytes" in r.json()["error"]["message"]


def test_hash_key_is_hex_sha256() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
