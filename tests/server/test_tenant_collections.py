"""Collections belong to the tenant whose key created them: another tenant cannot see, read, search,
ingest into or delete them (404, as if absent), and documents are warmed under the owner's salt."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.torch_engine import TorchEngine
from server.app import create_app
from tests.server.gateway_helpers import bearer, keyed_settings


def _wait_job(client: TestClient, key: str, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=bearer(key)).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, engine: TorchEngine) -> Any:
    settings = keyed_settings(tmp_path_factory.mktemp("tenants"), model_dir)
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


@pytest.fixture(scope="module")
def acme_docs(tenants: TestClient) -> dict[str, Any]:
    """acme's collection "docs" with one ingested document (unique text, cold for everyone)."""
    marker = uuid.uuid4().hex[:12]
    text = (
        f"The harbour of Velmora keeps its signal lamp in tower {marker}. "
        "The lamp is lit each evening by the harbour master. Ships enter from the north channel."
    )
    assert tenants.post("/v1/collections", json={"name": "docs"}, headers=bearer("alpha")).status_code == 201
    r = tenants.post("/v1/collections/docs/documents", json={"text": text}, headers=bearer("alpha"))
    assert r.status_code == 202, r.text
    job = _wait_job(tenants, "alpha", r.json()["job_id"])
    assert job["state"] == "succeeded", job
    return {"job_id": job["job_id"], "doc_id": job["documents"][0]["doc_id"], "marker": marker}


def test_same_tenant_sees_its_collection_under_its_own_name(
    tenants: TestClient, acme_docs: dict[str, Any]
) -> None:
    for key in ("alpha", "slow"):  # two keys of tenant acme
        r = tenants.get("/v1/collections/docs", headers=bearer(key))
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "docs" and r.json()["documents"] == 1
    names = [c["name"] for c in tenants.get("/v1/collections", headers=bearer("alpha")).json()["collections"]]
    assert names == ["docs"]
    job = tenants.get(f"/v1/jobs/{acme_docs['job_id']}", headers=bearer("alpha")).json()
    assert job["collection"] == "docs"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/collections/docs", None),
        ("DELETE", "/v1/collections/docs", None),
        ("POST", "/v1/collections/docs/documents", {"text": "intruder text"}),
        ("POST", "/v1/retrieve", {"collection": "docs", "query": "signal lamp"}),
        ("POST", "/generate", {"query": "Where is the lamp?", "collection": "docs", "max_tokens": 2}),
    ],
)
def test_another_tenant_gets_404_for_the_collection(
    tenants: TestClient, acme_docs: dict[str, Any], method: str, path: str, body: dict[str, Any] | None
) -> None:
    r = tenants.request(method, path, json=body, headers=bearer("beta"))
    assert r.status_code == 404, r.text
    message = r.json()["error"]["message"]
    assert "'docs'" in message and "does not exist" in message
    # ...and acme's collection is untouched
    assert tenants.get("/v1/collections/docs", headers=bearer("alpha")).json()["documents"] == 1


def test_another_tenant_cannot_reach_documents_jobs_or_the_listing(
    tenants: TestClient, acme_docs: dict[str, Any]
) -> None:
    doc = f"/v1/collections/docs/documents/{acme_docs['doc_id']}"
    assert tenants.get(doc, headers=bearer("alpha")).status_code == 200
    assert tenants.get(doc, headers=bearer("beta")).status_code == 404
    assert tenants.delete(doc, headers=bearer("beta")).status_code == 404
    assert tenants.get(f"/v1/jobs/{acme_docs['job_id']}", headers=bearer("beta")).status_code == 404
    assert tenants.get("/v1/collections", headers=bearer("beta")).json()["collections"] == []
    chat = {
        "messages": [{"role": "user", "content": "Where is the lamp?"}],
        "collection": "docs",
        "max_tokens": 2,
    }
    assert tenants.post("/v1/chat/completions", json=chat, headers=bearer("beta")).status_code == 404


def test_stored_names_cannot_be_addressed(tenants: TestClient, acme_docs: dict[str, Any]) -> None:
    """A dotted name (the shape of a stored name) is never a client's collection name."""
    manager = tenants.app.state.services.collections  # type: ignore[attr-defined]
    stored = [c.name for c in manager.list_collections() if c.name.startswith("docs.")]
    assert len(stored) == 1
    for key in ("alpha", "beta"):
        assert tenants.get(f"/v1/collections/{stored[0]}", headers=bearer(key)).status_code == 404
    r = tenants.post("/v1/collections", json={"name": stored[0]}, headers=bearer("beta"))
    assert r.status_code == 422 and "invalid collection name" in r.json()["error"]["message"]


def test_tenants_may_use_the_same_name(tenants: TestClient, acme_docs: dict[str, Any]) -> None:
    r = tenants.post("/v1/collections", json={"name": "docs"}, headers=bearer("beta"))
    assert r.status_code == 201, r.text
    try:
        assert tenants.get("/v1/collections/docs", headers=bearer("beta")).json()["documents"] == 0
        assert tenants.get("/v1/collections/docs", headers=bearer("alpha")).json()["documents"] == 1
        r = tenants.post("/v1/collections", json={"name": "docs"}, headers=bearer("alpha"))
        assert r.status_code == 409
    finally:
        assert tenants.delete("/v1/collections/docs", headers=bearer("beta")).status_code == 200
    assert tenants.get("/v1/collections/docs", headers=bearer("alpha")).status_code == 200


def test_ingestion_warms_chunk_caches_under_the_owners_salt(
    tenants: TestClient, acme_docs: dict[str, Any]
) -> None:
    """The first question of acme's key finds the chunks it ingested already cached."""
    body = {"query": "Which tower keeps the lamp?", "collection": "docs", "max_tokens": 2}
    r = tenants.post("/generate", json=body, headers=bearer("alpha"))
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    # everything but the question is cached; the system prefix alone would be far fewer tokens
    assert usage["cached_tokens"] >= 30 and usage["recomputed_tokens"] < usage["prompt_tokens"], usage
    citations = r.json()["citations"]
    assert citations and all(c["collection"] == "docs" for c in citations)
