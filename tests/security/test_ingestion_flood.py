"""One tenant flooding the ingestion queue through the API: past its cap its uploads get 429 with
Retry-After and a body naming the limit, nothing of them is stored and nothing queued is lost; another
tenant's upload is still accepted and is claimed before the flooding tenant's remaining jobs. On both
collection stores. The gateway's own worker is stopped first, so the jobs stay queued and the claim
order is read from the store, not from timing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.torch_engine import TorchEngine
from retrieval.collections import CollectionManager
from retrieval.jobs import Job
from server.app import create_app
from tests.postgres_server import PostgresServer
from tests.server.gateway_helpers import bearer, keyed_settings

CAP = 3


@pytest.fixture(params=["sqlite", "postgres"])
def client(
    request: pytest.FixtureRequest, tmp_path: Path, model_dir: Path, engine: TorchEngine
) -> Iterator[TestClient]:
    extra: dict[str, Any] = {}
    if request.param == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        extra["database_url"] = postgres.fresh_database()
    settings = keyed_settings(
        tmp_path, model_dir, retrieval_max_jobs_per_tenant=CAP, retrieval_queue_retry_after_s=7, **extra
    )
    with TestClient(create_app(settings, engine=engine)) as c:
        yield c


def manager(client: TestClient) -> CollectionManager:
    m = client.app.state.services.collections  # type: ignore[attr-defined]
    assert isinstance(m, CollectionManager)
    return m


def upload(client: TestClient, key: str, text: str) -> Any:
    return client.post("/v1/collections/docs/documents", json={"text": text}, headers=bearer(key))


def test_a_flooding_tenant_gets_429_and_another_tenant_is_served_first(client: TestClient) -> None:
    for key in ("alpha", "beta"):  # tenants acme and globex, each with its own "docs"
        assert client.post("/v1/collections", json={"name": "docs"}, headers=bearer(key)).status_code == 201
    m = manager(client)
    m._worker.close()  # a busy worker, as it were: what is accepted stays queued

    acme = []
    for n in range(CAP):
        r = upload(client, "alpha", f"Acme note {n}: the lamp is lit at dusk.")
        assert r.status_code == 202, r.text
        acme.append(r.json()["job_id"])
    for body in ({"text": "One too many."}, {"documents": [{"text": "Also too many.", "name": "x.txt"}]}):
        r = client.post("/v1/collections/docs/documents", json=body, headers=bearer("alpha"))
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] == "7"
        error = r.json()["error"]
        assert error["type"] == "queue_full" and error["limit"] == "retrieval_max_jobs_per_tenant"
        assert (error["max"], error["unfinished"]) == (CAP, CAP)
        assert "RAGBLEND_RETRIEVAL_MAX_JOBS_PER_TENANT" in error["message"]
    for job_id in acme:  # nothing queued was lost
        r = client.get(f"/v1/jobs/{job_id}", headers=bearer("alpha"))
        assert r.status_code == 200 and r.json()["state"] == "queued", r.text
    owners = {name.partition(".")[2] for name in m.store.names()}  # the two tenants' tags
    assert len(owners) == 2
    assert sorted(m.store.unfinished_jobs(o) for o in owners) == [0, CAP]  # the refused stored nothing

    r = upload(client, "beta", "Globex note: the ferry leaves at noon.")  # another tenant: accepted
    assert r.status_code == 202, r.text
    globex = r.json()["job_id"]

    order = []
    while (claimed := m.store.claim_job("test-worker", lease_s=60)) is not None:
        order.append(claimed[0].job_id)
        if len(order) == 1:  # acme's first job done: acme has room again
            done = Job.from_view(claimed[0], claimed[1])
            done.conclude()
            assert m.store.finish_job(done.view(), "test-worker", history=100)
            r = upload(client, "alpha", "Acme note 9: accepted once a job finished.")
            assert r.status_code == 202, r.text
            acme.append(r.json()["job_id"])
    # globex's job, queued after all of acme's, is claimed right after acme's first
    assert order == [acme[0], globex, *acme[1:]]
