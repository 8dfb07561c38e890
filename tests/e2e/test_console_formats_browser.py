"""The web console with the file formats: a PDF and an unreadable PDF uploaded through the page in
headless Chromium, the unreadable one reported by name while the other is ingested, and the page
numbers of the PDF shown in an answer's citations and in the cited document; metadata set on an
upload and a question filtered by it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.browser import Console, Shots, chromium, open_console
from tests.e2e.console_page import ask
from tests.e2e.server_process import running_server
from tests.retrieval.sample_files import encrypted_pdf_bytes, pdf_bytes
from tests.texts import rag_docs


@pytest.fixture(scope="module")
def base(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("console-formats")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp / "data"),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_MAX_TOKENS_LIMIT": "16",
    }
    with running_server(env, tmp / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def console(base: str) -> Iterator[Console]:
    with chromium() as browser:
        c = open_console(browser, base)
        yield c
        c.page.context.close()
        assert c.errors == [], c.errors


def test_upload_a_pdf_and_see_its_pages_in_citations(
    console: Console, base: str, tmp_path: Path, artifacts_dir: Path
) -> None:
    shots = Shots(artifacts_dir, "formats")
    page = console.page
    expect(page.locator("#server-status")).to_contain_text("Ready", timeout=30_000)
    page.fill("#collection-name", "atlas")
    page.press("#collection-name", "Enter")
    expect(page.locator("#collection-list li[data-name=atlas]")).to_be_visible()
    expect(page.locator("#upload-collection")).to_have_value("atlas")

    (tmp_path / "atlas.pdf").write_bytes(pdf_bytes())
    (tmp_path / "locked.pdf").write_bytes(encrypted_pdf_bytes())
    page.set_input_files("#upload-files", [str(tmp_path / "atlas.pdf"), str(tmp_path / "locked.pdf")])
    page.click("#add-documents button[type=submit]")
    job = page.locator(".job").first
    expect(job).to_have_attribute("data-state", "failed", timeout=300_000)  # one of two failed
    expect(job).to_contain_text(re.compile(r"atlas\.pdf: ingested, \d+ chunks?"))
    expect(job).to_contain_text("locked.pdf: failed: file 'locked.pdf' is an encrypted PDF")
    names = {d["name"] for d in httpx.get(f"{base}/v1/collections/atlas").json()["document_list"]}
    assert names == {"atlas.pdf"}
    page.click("#collection-list li[data-name=atlas] button[aria-expanded]")
    expect(page.locator("#collection-list .document-list")).to_contain_text(
        re.compile(r"atlas\.pdf 3 pages, \d+ chunks?")
    )
    shots.take(page, "01-uploaded")

    page.select_option("#ask-collection", "atlas")
    page.fill("#ask-top-k", "1")
    ask(page, "How long is the Corvin canal?")
    citation = page.locator("#answer-slot .citation").first
    expect(citation).to_contain_text("atlas.pdf, p. 3, chunk")
    shots.take(page, "02-answer")
    citation.click()
    expect(page.locator("#document-title")).to_have_text("atlas.pdf")
    expect(page.locator("#document-meta")).to_contain_text("3 pages")
    expect(page.locator("#document-meta")).to_contain_text(re.compile(r"characters \d+–\d+, p\. 3\)"))
    assert "Corvin canal" in "".join(page.locator("#document-text mark").all_inner_texts())
    shots.take(page, "03-document")


def test_set_metadata_on_uploads_and_filter_a_question(console: Console, base: str) -> None:
    page = console.page
    page.fill("#collection-name", "shelves")
    page.press("#collection-name", "Enter")
    expect(page.locator("#upload-collection")).to_have_value("shelves")
    question, (first, second) = rag_docs(2, 2, 60)
    for name, text, metadata in (
        ("red.txt", first, '{"shelf": "red", "year": 2021}'),
        ("blue.txt", second, '{"shelf": "blue", "year": 2024}'),
    ):
        page.fill("#paste-text", text)
        page.fill("#paste-name", name)
        page.fill("#upload-metadata", metadata)
        page.click("#add-documents button[type=submit]")
        expect(page.locator(".job").first).to_have_attribute("data-state", "succeeded", timeout=300_000)
    stored = httpx.get(f"{base}/v1/collections/shelves").json()["document_list"]
    assert {d["name"]: d["metadata"] for d in stored} == {
        "red.txt": {"shelf": "red", "year": 2021},
        "blue.txt": {"shelf": "blue", "year": 2024},
    }
    page.fill("#upload-metadata", "[1, 2]")  # not an object: named, nothing sent
    page.fill("#paste-text", "A note that must not be added.")
    page.click("#add-documents button[type=submit]")
    expect(page.locator(".job").first).to_contain_text("Metadata: expected a JSON object")
    assert len(httpx.get(f"{base}/v1/collections/shelves").json()["document_list"]) == 2

    page.select_option("#ask-collection", "shelves")
    page.fill("#ask-top-k", "3")
    page.fill("#ask-filter", '{"year": {"gte": 2023}}')
    body = ask(page, question)
    assert body["filter"] == {"year": {"gte": 2023}}
    cited = page.locator("#answer-slot .citation").all_inner_texts()
    assert cited and all("blue.txt" in c for c in cited), cited
    page.fill("#ask-filter", "{year")
    page.click("#ask-submit")
    expect(page.locator("#ask-error")).to_contain_text("Metadata filter: not valid JSON")
    page.fill("#ask-filter", "")
