"""Two gateway replicas (real uvicorn processes) on one Postgres: what one accepts, the other serves at
once, and a job whose replica is killed mid-way is finished by the other."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.server_process import ServerProcess, call, server_process, wait_for_job
from tests.postgres_server import PostgresServer

RIVERS = (
    "The Nile is a major north-flowing river in northeastern Africa. It flows into the Mediterranean "
    "Sea. The Nile is the longest river in Africa.\n\nThe Amazon in South America carries more water "
    "than any other river. Its basin is covered by rainforest."
)
TEA = "# Tea\n\nTea is an aromatic drink made by pouring hot water over cured leaves of Camellia sinensis."
CHUNKER = {"method": "ppl", "merge_target": 40, "max_tokens": 64}
LEASE_S = 3


def long_report(paragraphs: int) -> str:
    """A long, varied text (written for this test) that takes the ppl chunker several seconds."""
    crops = ["barley", "lentils", "flax", "rye", "millet", "beans"]
    towns = ["Aldmoor", "Brenhill", "Carrow", "Dunsby", "Elsmere", "Farthing"]
    parts = []
    for i in range(paragraphs):
        crop, town = crops[i % len(crops)], towns[(i * 5) % len(towns)]
        parts.append(
            f"In season {i + 3}, the farmers of {town} sowed {crop} on {40 + 7 * i} acres near the river. "
            f"A late frost in week {i % 9 + 1} cost them about {i % 7 + 2} percent of the harvest. "
            f"The cooperative sold what remained at the {town} market for {12 + i % 5} coins a sack, "
            f"and kept {i % 4 + 1} granaries in reserve for the winter that followed."
        )
    return "\n\n".join(parts)


@dataclass
class Replicas:
    a: ServerProcess
    b: ServerProcess
    database_url: str


@pytest.fixture(scope="module")
def replicas(
    model_dir: Path, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    tmp = tmp_path_factory.mktemp("replicas")
    url = postgres.fresh_database()
    common = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_DATABASE_URL": url,
        "RAGBLEND_RETRIEVAL_JOB_LEASE_S": str(LEASE_S),
    }
    with ExitStack() as stack:
        # A looks for jobs often; B seldom, so a job sent to A runs on A (A is also woken at once)
        a = stack.enter_context(
            server_process(
                {**common, "RAGBLEND_DATA_DIR": str(tmp / "a"), "RAGBLEND_RETRIEVAL_JOB_POLL_S": "0.3"},
                tmp / "a.log",
            )
        )
        b = stack.enter_context(
            server_process(
                {**common, "RAGBLEND_DATA_DIR": str(tmp / "b"), "RAGBLEND_RETRIEVAL_JOB_POLL_S": "2"},
                tmp / "b.log",
            )
        )
        yield Replicas(a, b, url)


def job_row(database_url: str, job_id: str) -> tuple[Any, ...]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT state, worker, attempts, progress FROM ragblend_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return tuple(row)


def test_what_one_replica_accepts_the_other_serves_at_once(replicas: Replicas) -> None:
    a, b = replicas.a.base, replicas.b.base
    r = call("POST", f"{a}/v1/collections", json={"name": "kb", "chunker": CHUNKER})
    assert r.status_code == 201, r.text
    assert call("GET", f"{b}/v1/collections/kb").status_code == 200  # no restart, no refresh
    assert call("POST", f"{b}/v1/collections", json={"name": "kb"}).status_code == 409

    accepted = call("POST", f"{a}/v1/collections/kb/documents", json={"text": RIVERS, "name": "rivers"})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    seen = call("GET", f"{b}/v1/jobs/{job_id}")  # the job is stored before the 202
    assert seen.status_code == 200 and seen.json()["state"] in ("queued", "running", "succeeded")
    upload = call("POST", f"{b}/v1/collections/kb/documents", files={"files": ("tea.md", TEA.encode())})
    assert upload.status_code == 202, upload.text

    for job in (wait_for_job(b, job_id, 180), wait_for_job(a, upload.json()["job_id"], 180)):
        assert job["state"] == "succeeded", job
    assert call("GET", f"{a}/v1/jobs/{job_id}").json() == call("GET", f"{b}/v1/jobs/{job_id}").json()

    query = {"collection": "kb", "query": "Where does the Nile end?", "top_k": 3}
    hits_b = call("POST", f"{b}/v1/retrieve", json=query).json()["chunks"]
    rivers_id = accepted.json()["documents"][0]["doc_id"]
    assert hits_b[0]["doc_id"] == rivers_id and "Mediterranean" in hits_b[0]["text"]
    assert RIVERS[hits_b[0]["start"] : hits_b[0]["end"]] == hits_b[0]["text"]
    hits_a = call("POST", f"{a}/v1/retrieve", json=query).json()["chunks"]
    assert [h["chunk_id"] for h in hits_a] == [h["chunk_id"] for h in hits_b]
    assert call("GET", f"{a}/v1/collections").json() == call("GET", f"{b}/v1/collections").json()

    tea_id = upload.json()["documents"][0]["doc_id"]
    assert call("DELETE", f"{a}/v1/collections/kb/documents/{tea_id}").status_code == 200
    assert call("GET", f"{b}/v1/collections/kb/documents/{tea_id}").status_code == 404
    r = call("POST", f"{b}/v1/retrieve", json={"collection": "kb", "query": "tea leaves", "top_k": 10})
    assert all(h["doc_id"] != tea_id for h in r.json()["chunks"])


def test_a_killed_replicas_job_is_finished_by_the_other(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    assert (
        call("POST", f"{a.base}/v1/collections", json={"name": "farms", "chunker": CHUNKER}).status_code
        == 201
    )
    text = long_report(16)
    docs = {"documents": [{"text": RIVERS, "name": "rivers"}, {"text": text, "name": "report"}]}
    accepted = call("POST", f"{a.base}/v1/collections/farms/documents", json=docs)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]

    owner = f"{socket.gethostname()}:{a.proc.pid}:"
    deadline = time.monotonic() + 120
    while True:  # kill A once it is in the middle of the job: working on the long document
        state, worker, attempts, progress = job_row(replicas.database_url, job_id)
        if state == "running" and progress > 0.55:
            break
        assert state in ("queued", "running") and time.monotonic() < deadline, (state, progress)
        time.sleep(0.05)
    assert (worker or "").startswith(owner), f"the job runs on {worker}, not on replica A"
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait(10)

    job = wait_for_job(b.base, job_id, timeout=240)
    assert job["state"] == "succeeded", job
    assert [d["state"] for d in job["documents"]] == ["ingested", "ingested"]
    state, worker, attempts, _ = job_row(replicas.database_url, job_id)
    assert (state, worker, attempts) == ("succeeded", None, 2)
    report_id = accepted.json()["documents"][1]["doc_id"]
    doc = call("GET", f"{b.base}/v1/collections/farms/documents/{report_id}").json()
    assert doc["text"] == text and "".join(c["text"] for c in doc["chunks"]) == text  # stored once
    r = call(
        "POST", f"{b.base}/v1/retrieve", json={"collection": "farms", "query": "frost in Carrow", "top_k": 3}
    )
    assert r.status_code == 200 and r.json()["chunks"][0]["doc_id"] == report_id
    assert call("GET", f"{b.base}/v1/collections/farms").json()["documents"] == 2
