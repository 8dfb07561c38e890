"""Uploading PDF, DOCX, HTML and CSV files built by the test to a real server, retrieving their facts,
page numbers in retrieval hits and generation citations, and unreadable files failing alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server_process import call, running_server, wait_for_job
from tests.retrieval.sample_files import (
    CSV_TEXT,
    NOISE,
    docx_bytes,
    encrypted_pdf_bytes,
    html_bytes,
    pdf_bytes,
)

CHUNKER = {"method": "ppl", "merge_target": 60, "max_tokens": 96}


@pytest.fixture(scope="module")
def base(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("formats")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp / "data"),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_RETRIEVAL_MAX_PDF_PAGES": "5",
        "RAGBLEND_RETRIEVAL_PRECOMPUTE_KV": "false",
    }
    with running_server(env, tmp / "server.log") as url:
        r = call("POST", f"{url}/v1/collections", json={"name": "kb", "chunker": CHUNKER})
        assert r.status_code == 201, r.text
        yield url


def retrieve(base: str, query: str, top_k: int = 3) -> list[dict[str, Any]]:
    r = call("POST", f"{base}/v1/retrieve", json={"collection": "kb", "query": query, "top_k": top_k})
    assert r.status_code == 200, r.text
    return list(r.json()["chunks"])


def test_an_upload_of_every_format_with_unreadable_files_among_them(base: str) -> None:
    files = [
        ("files", ("atlas.pdf", pdf_bytes(), "application/pdf")),
        ("files", ("tamsa.docx", docx_bytes())),
        ("files", ("maddock.html", html_bytes(), "text/html")),
        ("files", ("lakes.csv", CSV_TEXT.encode(), "text/csv")),
        ("files", ("locked.pdf", encrypted_pdf_bytes(), "application/pdf")),
        ("files", ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type", "application/pdf")),
        ("files", ("photo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 32, "image/png")),
        ("files", ("long.pdf", pdf_bytes(("One.", "Two.", "Three.", "Four.", "Five.", "Six.")))),
    ]
    r = call("POST", f"{base}/v1/collections/kb/documents", files=files)
    assert r.status_code == 202, r.text
    accepted = {d["name"]: d for d in r.json()["documents"]}
    failed = {"locked.pdf": "encrypted", "broken.pdf": "not a readable PDF", "photo.png": "PNG image",
              "long.pdf": "6 pages, the limit is 5"}  # fmt: skip
    for name, phrase in failed.items():
        assert accepted[name]["state"] == "failed" and phrase in accepted[name]["error"], accepted[name]
        assert name in accepted[name]["error"]
    job = wait_for_job(base, r.json()["job_id"], timeout=600)
    outcome = {d["name"]: d for d in job["documents"]}
    assert {n for n, d in outcome.items() if d["state"] == "ingested"} == {
        "atlas.pdf", "tamsa.docx", "maddock.html", "lakes.csv"}, job  # fmt: skip
    assert all(outcome[n]["state"] == "failed" and failed[n] in outcome[n]["error"] for n in failed)
    assert job["state"] == "failed" and "4 of 8 documents failed" in job["error"]

    listed = {d["name"]: d for d in call("GET", f"{base}/v1/collections/kb").json()["document_list"]}
    assert listed["atlas.pdf"]["pages"] == 3 and listed["tamsa.docx"]["pages"] is None

    # each format's facts are found, the PDF's with the page they are on
    canal = retrieve(base, "How long is the Corvin canal and when was it dug?")[0]
    assert canal["document_name"] == "atlas.pdf" and "eighty-four" in canal["text"], canal
    assert canal["pages"] == [3, 3]
    bridge = retrieve(base, "Who began building Harrowgate Bridge?")[0]
    assert bridge["document_name"] == "atlas.pdf" and bridge["pages"] == [1, 1], bridge
    lake = retrieve(base, "How deep is Lake Tamsa?")
    assert any(h["document_name"] in ("tamsa.docx", "lakes.csv") and "sixty-seven" in h["text"] + "67"
               for h in lake)  # fmt: skip
    ferry = retrieve(base, "How long does the Tamsa Queen ferry crossing take?")
    assert any("40 minutes" in h["text"] for h in ferry), ferry
    island = retrieve(base, "How large is Maddock Island?")[0]
    assert island["document_name"] == "maddock.html" and island["pages"] is None, island
    orvel = retrieve(base, "What is the area of Lake Orvel?")
    assert any(h["document_name"] == "lakes.csv" and "Lake Orvel; area_km2: 35" in h["text"] for h in orvel)

    # the HTML page's text is its article, without its navigation, scripts, styles or footer
    html_doc = call("GET", f"{base}/v1/collections/kb/documents/{island['doc_id']}").json()
    assert "Maddock" in html_doc["text"] and not [n for n in NOISE if n in html_doc["text"]]

    # offsets stay exact in the extracted text, and each chunk knows its pages
    pdf = call("GET", f"{base}/v1/collections/kb/documents/{canal['doc_id']}").json()
    assert pdf["text"][canal["start"] : canal["end"]] == canal["text"]
    assert "".join(c["text"] for c in pdf["chunks"]) == pdf["text"]
    starts = pdf["page_starts"]
    assert len(starts) == 3 and starts[0] == 0
    assert pdf["text"][starts[2] :].startswith("The Corvin canal")
    for c in pdf["chunks"]:
        first = sum(1 for s in starts if s <= c["start"])
        last = sum(1 for s in starts if s <= c["end"] - 1)
        assert c["pages"] == [first, last], c

    # citations of an answer carry the pages too
    question = {"query": "When was the Corvin canal dug?", "collection": "kb", "top_k": 2, "max_tokens": 4}
    r = call("POST", f"{base}/generate", json=question)
    assert r.status_code == 200, r.text
    cited = r.json()["citations"]
    assert cited[0]["document_name"] == "atlas.pdf" and cited[0]["pages"] == [3, 3], cited


def test_an_upload_where_no_file_can_be_read_is_refused(base: str) -> None:
    files = [("files", ("locked.pdf", encrypted_pdf_bytes())), ("files", ("cut.pdf", pdf_bytes()[:300]))]
    r = call("POST", f"{base}/v1/collections/kb/documents", files=files)
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "locked.pdf" in message and "encrypted" in message and "cut.pdf" in message
    r = call(
        "POST", f"{base}/v1/collections/kb/documents", files={"files": ("pic.png", b"\x89PNG\r\n\x1a\n")}
    )
    assert r.status_code == 415 and "pic.png" in r.json()["error"]["message"], r.text
