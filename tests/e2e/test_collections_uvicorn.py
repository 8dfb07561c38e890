"""Collections, ingestion jobs and retrieval against a real uvicorn process, across a restart."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import call, running_server, wait_for_job

RIVERS = (
    "The Nile is a major north-flowing river in northeastern Africa. It flows into the Mediterranean "
    "Sea. The Nile is the longest river in Africa.\n\nThe Amazon in South America carries more water "
    "than any other river. Its basin is covered by rainforest."
)
TOWERS = "The Eiffel Tower is a lattice tower in Paris. It was finished in 1889 for the World's Fair."
TEA = "# Tea\n\nTea is an aromatic drink made by pouring hot water over cured leaves of Camellia sinensis."
CHUNKER = {"method": "ppl", "merge_target": 40, "max_tokens": 64}


class Server:
    """A server on a fixed data dir that a test can stop and start again."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.starts = env, log_dir, 0
        self._stack = ExitStack()
        self.base = ""

    def start(self) -> None:
        self.starts += 1
        self.base = self._stack.enter_context(running_server(self.env, self.log_dir / f"s{self.starts}.log"))

    def restart(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        self.start()

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("collections")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp / "data"),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_MAX_BODY_BYTES": "300000",
        "RAGBLEND_MAX_UPLOAD_BYTES": "300000",
        "RAGBLEND_RETRIEVAL_MAX_DOCUMENT_CHARS": "20000",
        "RAGBLEND_RETRIEVAL_MAX_TOP_K": "20",
    }
    s = Server(env, tmp)
    s.start()
    yield s
    s.close()


def expect_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"], error


def test_create_list_and_bad_requests(server: Server) -> None:
    base = server.base
    r = call("POST", f"{base}/v1/collections", json={"name": "kb", "chunker": CHUNKER})
    assert r.status_code == 201, r.text
    assert r.json()["config"]["chunker"]["method"] == "ppl" and r.json()["documents"] == 0
    expect_error(call("POST", f"{base}/v1/collections", json={"name": "kb"}), 409, "already exists")
    expect_error(
        call("POST", f"{base}/v1/collections", json={"name": "Bad Name!"}), 422, "invalid collection"
    )
    bad = {"name": "x", "chunker": {"method": "fixed", "size": 16, "overlap": 16}}
    expect_error(call("POST", f"{base}/v1/collections", json=bad), 422, "overlap")
    expect_error(call("GET", f"{base}/v1/collections/nope"), 404, "does not exist")
    expect_error(call("DELETE", f"{base}/v1/collections/nope"), 404, "does not exist")
    expect_error(call("GET", f"{base}/v1/jobs/nope"), 404, "does not exist")
    names = [c["name"] for c in call("GET", f"{base}/v1/collections").json()["collections"]]
    assert names == ["kb"]


def test_bad_documents_are_refused_by_name(server: Server) -> None:
    docs = f"{server.base}/v1/collections/kb/documents"
    expect_error(
        call("POST", f"{server.base}/v1/collections/nope/documents", json={"text": "x"}), 404, "nope"
    )
    expect_error(call("POST", docs, json={"text": "   "}), 422, "empty")
    expect_error(call("POST", docs, json={"text": "x" * 20001}), 413, "limit is 20000")
    expect_error(call("POST", docs, json={"text": "a", "documents": []}), 422, "either")
    expect_error(
        call("POST", docs, content=b"{not json", headers={"content-type": "application/json"}), 422, ""
    )
    expect_error(
        call("POST", docs, content=b"hello", headers={"content-type": "text/plain"}), 415, "content type"
    )
    expect_error(call("POST", docs, files={"files": ("a.pdf", b"%PDF-1.4")}), 422, "a.pdf")
    expect_error(call("POST", docs, files={"files": ("b.txt", b"\x00\x01\x02" * 10)}), 415, "b.txt")
    expect_error(call("POST", docs, files={"files": ("c.txt", b"caf\xe9 au lait")}), 415, "not UTF-8")
    expect_error(call("POST", docs, files={"note": (None, "no file")}), 422, "no files")
    expect_error(call("POST", docs, files={"files": ("big.txt", b"a" * 25_000)}), 413, "limit is 20000")
    expect_error(call("POST", docs, files={"files": ("huge.txt", b"a" * 400_000)}), 413, "300000 bytes")


def test_ingest_retrieve_show_and_delete(server: Server) -> None:
    base = server.base
    r = call("POST", f"{base}/v1/collections/kb/documents", json={"text": RIVERS, "name": "rivers"})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status_url"] == f"/v1/jobs/{accepted['job_id']}"
    files = [("files", ("towers.txt", TOWERS.encode())), ("files", ("tea.md", TEA.encode()))]
    upload = call("POST", f"{base}/v1/collections/kb/documents", files=files)
    assert upload.status_code == 202, upload.text
    for job_id in (accepted["job_id"], upload.json()["job_id"]):
        job = wait_for_job(base, job_id)
        assert job["state"] == "succeeded" and job["progress"] == 1.0, job
        assert all(d["state"] == "ingested" and d["chunks"] >= 1 for d in job["documents"])
    detail = call("GET", f"{base}/v1/collections/kb").json()
    assert detail["documents"] == 3 and {d["name"] for d in detail["document_list"]} == {
        "rivers", "towers.txt", "tea.md"}  # fmt: skip

    r = call("POST", f"{base}/v1/retrieve", json={"collection": "kb", "query": "Where does the Nile end?"})
    assert r.status_code == 200, r.text
    hits = r.json()["chunks"]
    rivers_id = accepted["documents"][0]["doc_id"]
    assert hits[0]["doc_id"] == rivers_id and "Mediterranean" in hits[0]["text"]
    assert RIVERS[hits[0]["start"] : hits[0]["end"]] == hits[0]["text"]
    doc = call("GET", f"{base}/v1/collections/kb/documents/{rivers_id}").json()
    assert doc["text"] == RIVERS and "".join(c["text"] for c in doc["chunks"]) == RIVERS
    assert len(doc["chunks"]) >= 2  # ppl + merging at 40 tokens splits this text

    expect_error(call("POST", f"{base}/v1/retrieve", json={"collection": "nope", "query": "x"}), 404, "nope")
    expect_error(call("POST", f"{base}/v1/retrieve", json={"collection": "kb", "query": ""}), 422, "query")
    body = {"collection": "kb", "query": "x", "top_k": 21}
    expect_error(call("POST", f"{base}/v1/retrieve", json=body), 422, "top_k")

    tea_id = upload.json()["documents"][1]["doc_id"]
    r = call("DELETE", f"{base}/v1/collections/kb/documents/{tea_id}")
    assert r.status_code == 200 and r.json()["chunks_removed"] >= 1
    expect_error(call("DELETE", f"{base}/v1/collections/kb/documents/{tea_id}"), 404, tea_id)
    r = call("POST", f"{base}/v1/retrieve", json={"collection": "kb", "query": "tea leaves", "top_k": 20})
    assert all(h["doc_id"] != tea_id for h in r.json()["chunks"])


def ask(base: str, **body: Any) -> httpx.Response:
    return call("POST", f"{base}/generate", json={"max_tokens": 8, **body})


def test_generate_from_a_collection_finds_chunk_caches_warm(server: Server) -> None:
    base = server.base
    r = ask(base, query="Where does the Nile flow into?", collection="kb", top_k=2)
    assert r.status_code == 200, r.text
    out = r.json()
    citations = out["citations"]
    assert [c["index"] for c in citations] == [0, 1] and citations[0]["collection"] == "kb"
    doc = call("GET", f"{base}/v1/collections/kb/documents/{citations[0]['doc_id']}").json()
    cited = doc["text"][citations[0]["start"] : citations[0]["end"]]
    assert "Mediterranean" in cited
    usage = out["usage"]
    # ingestion stored every chunk's cache: all but the question piece is reused on the first ask
    assert usage["cached_tokens"] > 0 and usage["prompt_tokens"] - usage["cached_tokens"] < 40, usage
    assert out["timings"]["retrieve_ms"] > 0

    with httpx.stream(
        "POST", f"{base}/generate", json={"query": "Which tower?", "collection": "kb", "stream": True,
                                          "top_k": 1, "max_tokens": 4}, timeout=60,
    ) as s:  # fmt: skip
        events = [line.removeprefix("event: ") for line in s.iter_lines() if line.startswith("event: ")]
    assert events[0] == "citations" and events[-1] == "done" and "token" in events

    expect_error(ask(base, query="x", collection="nope"), 404, "nope")
    expect_error(ask(base, query="x", collection="kb", documents=["a"]), 422, "either documents")
    expect_error(ask(base, query="x", top_k=3), 422, "top_k")
    expect_error(ask(base, query="x", collection="kb", top_k=0), 422, "top_k")


def test_generate_selects_chunks_under_a_budget(server: Server) -> None:
    base = server.base
    selection = {"method": "corag", "budget": 60, "iterations": 32, "seed": 1}
    r = ask(base, query="Where does the Nile flow into?", collection="kb", top_k=4, selection=selection)
    assert r.status_code == 200, r.text
    out = r.json()
    report = out["selection"]
    assert report["method"] == "corag" and report["candidates"] >= 2
    assert 1 <= len(report["chosen"]) <= report["candidates"] and report["cost"] <= 60
    assert len(out["citations"]) == len(report["chosen"]) and out["timings"]["select_ms"] > 0
    # warm chunks cost only their recompute share, so the search could afford more than 60 tokens
    assert report["warm"] == len(report["chosen"])
    again = ask(base, query="Where does the Nile flow into?", collection="kb", top_k=4, selection=selection)
    assert again.json()["selection"]["chosen"] == report["chosen"]  # deterministic for a seed

    docs = ["Paris is the capital of France.", "The Nile flows into the Mediterranean.", "Tea is a drink."]
    r = ask(base, query="Capital of France?", documents=docs, selection={"method": "topk", "budget": 20})
    assert r.status_code == 200, r.text
    assert r.json()["selection"]["method"] == "topk" and r.json()["selection"]["chosen"]

    bad = {"method": "corag", "iterations": 0}
    expect_error(ask(base, query="x", collection="kb", selection=bad), 422, "iterations")
    expect_error(ask(base, query="x", collection="kb", selection={"method": "best"}), 422, "method")


def test_collections_survive_a_restart(server: Server) -> None:
    base = server.base
    query = {"collection": "kb", "query": "Which tower was finished in 1889?", "top_k": 4}
    before = call("POST", f"{base}/v1/retrieve", json=query).json()["chunks"]
    listing = call("GET", f"{base}/v1/collections").json()
    call("POST", f"{base}/v1/collections", json={"name": "scratch"})
    assert call("DELETE", f"{base}/v1/collections/scratch").status_code == 200
    server.restart()
    base = server.base
    assert call("GET", f"{base}/v1/collections").json() == listing
    after = call("POST", f"{base}/v1/retrieve", json=query).json()["chunks"]
    assert [(h["chunk_id"], h["doc_id"], h["start"], h["end"]) for h in after] == [
        (h["chunk_id"], h["doc_id"], h["start"], h["end"]) for h in before
    ]
    assert [h["score"] for h in after] == pytest.approx([h["score"] for h in before], abs=1e-5)
    assert "Eiffel" in after[0]["text"]
    usage = ask(base, query="Which tower was finished in 1889?", collection="kb", top_k=2).json()["usage"]
    assert usage["cached_tokens"] > 0  # the chunk caches survived too (disk tier)
