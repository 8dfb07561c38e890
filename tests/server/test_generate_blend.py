"""/generate with documents reuses their chunk caches and reports it."""

from __future__ import annotations

from fastapi.testclient import TestClient

DOCS = [
    "Lake Baikal in Siberia is the deepest lake in the world, at 1,642 metres.",
    "Lake Superior is the largest of the Great Lakes of North America by surface area.",
    "The Caspian Sea is the largest inland body of water on Earth by area.",
]


def test_second_request_reuses_chunk_caches(client: TestClient) -> None:
    body = {
        "query": "Which lake is the deepest?",
        "documents": DOCS,
        "max_tokens": 8,
        "blend": {"mode": "cacheblend"},
    }
    first = client.post("/generate", json=body).json()
    assert first["usage"]["cached_tokens"] == 0
    reordered = {**body, "documents": list(reversed(DOCS))}
    second = client.post("/generate", json=reordered).json()
    usage, timings = second["usage"], second["timings"]
    doc_tokens = first["usage"]["prompt_tokens"] - 20  # all but the question piece, roughly
    assert usage["cached_tokens"] >= doc_tokens
    assert 0 < usage["recomputed_tokens"] < usage["cached_tokens"]
    assert {"kv_fetch_ms", "prefill_ms", "ttft_ms", "total_ms"} <= set(timings)


def test_full_mode_reports_no_reuse(client: TestClient) -> None:
    body = {"query": "Which lake is largest?", "documents": DOCS, "max_tokens": 4, "blend": {"mode": "full"}}
    client.post("/generate", json=body)
    usage = client.post("/generate", json=body).json()["usage"]
    assert usage["cached_tokens"] == 0 and usage["recomputed_tokens"] == 0
