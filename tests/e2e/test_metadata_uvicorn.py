"""Metadata, filters, retrieval modes and re-ingest by name against a real uvicorn process, once on
the embedded store (SQLite + FAISS) and once on Postgres + pgvector."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import call, running_server, wait_for_job
from tests.postgres_server import PostgresServer
from tests.texts import PASSAGES

CHUNKER = {"method": "sentences", "merge_target": 120, "max_tokens": 256}
# six passages: three about Dunmere's bridge and town, three about islands and sky
TOPICS = ["town", "town", "town", "islands", "islands", "sky"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def base(
    request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp(f"metadata-{request.param}")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp / "data"),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_RETRIEVAL_MAX_TOP_K": "20",
    }
    if request.param == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres")
        env["RAGBLEND_DATABASE_URL"] = postgres.fresh_database()
    with running_server(env, tmp / "server.log") as url:
        r = call("POST", f"{url}/v1/collections", json={"name": "kb", "chunker": CHUNKER})
        assert r.status_code == 201, r.text
        docs = [
            {"name": p.title, "text": p.text, "metadata": {"topic": TOPICS[i], "year": 1900 + 10 * i}}
            for i, p in enumerate(PASSAGES[:6])
        ]
        job = call("POST", f"{url}/v1/collections/kb/documents", json={"documents": docs}).json()
        assert wait_for_job(url, job["job_id"], timeout=300)["state"] == "succeeded"
        yield url


def expect_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"], response.json()


def retrieve(base: str, **body: Any) -> httpx.Response:
    return call("POST", f"{base}/v1/retrieve", json={"collection": "kb", **body})


def test_metadata_is_stored_returned_and_filters_every_mode(base: str) -> None:
    detail = call("GET", f"{base}/v1/collections/kb").json()
    assert detail["config"]["retrieval"] == "hybrid"
    listed = {d["name"]: d for d in detail["document_list"]}
    maddock = listed["Maddock Island"]
    assert maddock["metadata"] == {"topic": "islands", "year": 1940} and len(maddock["content_hash"]) == 64
    doc = call("GET", f"{base}/v1/collections/kb/documents/{maddock['doc_id']}").json()
    assert doc["metadata"] == {"topic": "islands", "year": 1940}

    question = "When was the lighthouse on Maddock Island lit?"
    for mode in ("dense", "keyword", "hybrid", None):
        r = retrieve(base, query=question, top_k=3, **({"retrieval": mode} if mode else {}))
        assert r.status_code == 200, r.text
        assert r.json()["retrieval"] == (mode or "hybrid")
        top = r.json()["chunks"][0]
        assert top["document_name"] == "Maddock Island" and top["metadata"]["topic"] == "islands", mode
        assert "1874" in top["text"]
        town = retrieve(base, query=question, top_k=5, filter={"topic": "town"}, retrieval=mode or "hybrid")
        assert all(c["metadata"]["topic"] == "town" for c in town.json()["chunks"]), mode
        years = retrieve(
            base,
            query=question,
            top_k=20,
            filter={"year": {"gte": 1910, "lt": 1940}},
            retrieval=mode or "dense",
        ).json()["chunks"]
        assert {c["metadata"]["year"] for c in years} <= {1910, 1920, 1930}, mode
        assert years or mode == "keyword", mode  # keyword search finds only chunks with these words
        some = retrieve(base, query=question, top_k=20, filter={"topic": {"in": ["sky", "islands"]}})
        assert {c["metadata"]["topic"] for c in some.json()["chunks"]} <= {"sky", "islands"}
    dense_town = retrieve(base, query=question, top_k=5, filter={"topic": "town"}, retrieval="dense")
    assert len(dense_town.json()["chunks"]) == 5  # the best five among the town's chunks, not fewer
    nothing = retrieve(base, query=question, top_k=5, filter={"colour": "red"})
    assert nothing.status_code == 200 and nothing.json()["chunks"] == []

    expect_error(retrieve(base, query="x", filter={"year": {"between": [1, 2]}}), 422, "filter.year.between")
    expect_error(retrieve(base, query="x", filter={"year": {"gte": "1900"}}), 422, "filter.year.gte")
    expect_error(retrieve(base, query="x", filter=["topic"]), 422, "filter")
    expect_error(retrieve(base, query="x", retrieval="fuzzy"), 422, "retrieval")


def test_generate_and_chat_filter_and_cite_metadata(base: str) -> None:
    body = {"query": "Which island has a lighthouse?", "collection": "kb", "top_k": 2, "max_tokens": 4}
    r = call(
        "POST", f"{base}/generate", json={**body, "filter": {"topic": "islands"}, "retrieval": "keyword"}
    )
    assert r.status_code == 200, r.text
    citations = r.json()["citations"]
    assert citations and all(c["metadata"]["topic"] == "islands" for c in citations)
    expect_error(
        call("POST", f"{base}/generate", json={"query": "q", "documents": ["d"], "filter": {"a": 1}}),
        422,
        "filter: only meaningful with a collection",
    )
    expect_error(
        call("POST", f"{base}/generate", json={**body, "filter": {"a": {"near": 1}}}), 422, "filter.a.near"
    )
    model = call("GET", f"{base}/v1/models").json()["data"][0]["id"]
    chat = {
        "model": model,
        "messages": [{"role": "user", "content": "Who founded the observatory?"}],
        "collection": "kb",
        "top_k": 2,
        "max_tokens": 4,
        "filter": {"topic": "sky"},
    }
    r = call("POST", f"{base}/v1/chat/completions", json=chat)
    assert r.status_code == 200, r.text
    cited = r.json()["citations"]
    assert cited and all(c["metadata"] == {"topic": "sky", "year": 1950} for c in cited)
    bad = call("POST", f"{base}/v1/chat/completions", json={**chat, "filter": {"year": {"lt": "x"}}})
    assert bad.status_code in (400, 422) and "filter.year.lt" in bad.text


def test_ingestion_metadata_json_and_multipart_and_reingest_by_name(base: str) -> None:
    docs = f"{base}/v1/collections/kb/documents"
    bad = {"documents": [{"text": "fine"}, {"text": "also fine", "metadata": {"x": {"nested": 1}}}]}
    expect_error(call("POST", docs, json=bad), 422, "documents.1.metadata.x")
    expect_error(call("POST", docs, json={"text": "t", "metadata": ["a"]}), 422, "metadata")
    files = {"files": ("notes.md", PASSAGES[14].text.encode(), "text/markdown")}
    expect_error(
        call("POST", docs, files=files, data={"metadata": "{not json"}), 422, "metadata: not valid JSON"
    )

    meta = {"topic": "festivals", "year": 2020}
    r = call("POST", docs, files=files, data={"metadata": json.dumps(meta)})
    assert r.status_code == 202, r.text
    first = wait_for_job(base, r.json()["job_id"], timeout=300)
    assert first["state"] == "succeeded" and first["documents"][0]["state"] == "ingested"
    doc_id = first["documents"][0]["doc_id"]
    stored = call("GET", f"{docs}/{doc_id}").json()
    assert stored["metadata"] == meta
    found = retrieve(base, query="When is the lantern festival?", top_k=1, filter={"topic": "festivals"})
    assert found.json()["chunks"][0]["doc_id"] == doc_id

    # the same file again: nothing to do, said at once and by the job
    again = call("POST", docs, files=files, data={"metadata": json.dumps(meta)})
    assert again.json()["documents"][0] == {"doc_id": doc_id, "name": "notes.md", "state": "unchanged"}
    job = wait_for_job(base, again.json()["job_id"])
    assert job["state"] == "succeeded" and job["documents"][0]["state"] == "unchanged"
    assert job["documents"][0]["chunks"] == len(stored["chunks"])
    # changed: the new version replaces the old one, whose chunks are gone
    changed = PASSAGES[14].text + "\n\nFrom 2031 the festival moved to the first Saturday of December."
    r = call("POST", docs, json={"name": "notes.md", "text": changed, "metadata": meta})
    replaced = wait_for_job(base, r.json()["job_id"], timeout=300)
    new_id = replaced["documents"][0]["doc_id"]
    assert replaced["state"] == "succeeded" and new_id != doc_id
    assert call("GET", f"{docs}/{doc_id}").status_code == 404
    names = [d["name"] for d in call("GET", f"{base}/v1/collections/kb").json()["document_list"]]
    assert names.count("notes.md") == 1
    hit = retrieve(base, query="festival first Saturday of December 2031", top_k=1, retrieval="keyword")
    assert hit.json()["chunks"][0]["doc_id"] == new_id and "2031" in hit.json()["chunks"][0]["text"]
