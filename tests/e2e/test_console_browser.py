"""The web console in headless Chromium against a real server on loopback, step by step.

The steps build on each other (one page, one server): create a collection, upload and paste
documents, ask, follow a citation, watch the cache panel, compare modes, use only the keyboard, and
fit a phone's width. Each step leaves a screenshot in test-artifacts/console/.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.browser import PHONE, Console, Shots, chromium, horizontal_overflow, open_console
from tests.e2e.console_page import ANSWER_TIMEOUT_MS, ask, cache_numbers, sent_body, usage
from tests.e2e.server_process import running_server

RIVERS = (
    "# Rivers\n\nThe Nile is a major north-flowing river in northeastern Africa. It flows into the "
    "Mediterranean Sea.\n\nThe Amazon in South America carries more water than any other river."
)
TOWERS = "The Eiffel Tower is a lattice tower in Paris. It was finished in 1889 for the World's Fair."


@pytest.fixture(scope="module")
def base(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("console")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp / "data"),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_MAX_TOKENS_LIMIT": "64",
    }
    with running_server(env, tmp / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def console(browser: Browser, base: str) -> Iterator[Console]:
    c = open_console(browser, base)
    yield c
    c.page.context.close()
    assert c.errors == [], c.errors


@pytest.fixture(scope="module")
def shots(artifacts_dir: Path) -> Shots:
    return Shots(artifacts_dir, "main")


def test_page_comes_from_the_server_alone(console: Console, base: str, shots: Shots) -> None:
    page = console.page
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((base, "data:")) else None)
    page.reload()
    expect(page.locator("#server-status")).to_contain_text("Ready", timeout=30_000)
    expect(page.locator("#collections-message")).to_contain_text("No collections yet")
    expect(page.locator("#cache-status")).to_contain_text("Updated", timeout=10_000)
    assert outside == []
    r = httpx.get(f"{base}/")
    assert r.status_code == 200 and "default-src 'self'" in r.headers["content-security-policy"]
    assert httpx.get(f"{base}/console/app.js").headers["content-type"].startswith("text/javascript")
    missing = httpx.get(f"{base}/console/secrets.py")
    assert missing.status_code == 404 and "secrets.py" in missing.json()["error"]["message"]
    assert httpx.get(f"{base}/console/..%2Fapp.py").status_code == 404
    shots.take(page, "01-loaded")


def test_create_collection_upload_and_paste(
    console: Console, base: str, tmp_path: Path, shots: Shots
) -> None:
    page = console.page
    page.fill("#collection-name", "Bad Name")
    page.click("#create-collection button[type=submit]")  # the browser refuses it by the pattern
    assert page.locator("#collection-list li").count() == 0
    page.fill("#collection-name", "notes")
    page.select_option("#collection-chunker", "fixed")
    page.fill("#collection-chunk-size", "10")  # under the default overlap of 16: the server refuses
    page.press("#collection-name", "Enter")
    expect(page.locator("#collections-message")).to_contain_text("overlap (16) must be smaller than size")
    page.select_option("#collection-chunker", "ppl")
    page.fill("#collection-chunk-size", "40")  # small pieces, so a short document has several chunks
    page.press("#collection-name", "Enter")
    expect(page.locator("#collection-list li[data-name=notes]")).to_be_visible()
    assert httpx.get(f"{base}/v1/collections/notes").json()["config"]["chunker"]["merge_target"] == 40
    expect(page.locator("#upload-collection")).to_have_value("notes")
    shots.take(page, "02-collection")

    upload = tmp_path / "rivers.md"
    upload.write_text(RIVERS)
    page.set_input_files("#upload-files", str(upload))
    page.click("#add-documents button[type=submit]")
    job = page.locator(".job").first
    expect(job).to_have_attribute("data-state", "succeeded", timeout=120_000)
    expect(job.locator("progress")).to_have_js_property("value", 1)
    expect(job).to_contain_text(re.compile(r"rivers\.md: ingested, [2-9] chunks"))

    page.fill("#paste-text", TOWERS)
    page.fill("#paste-name", "towers.txt")
    page.click("#add-documents button[type=submit]")
    expect(page.locator(".job").first).to_have_attribute("data-state", "succeeded", timeout=120_000)
    expect(page.locator("#collection-list li[data-name=notes]")).to_contain_text("2 documents")
    names = {d["name"] for d in httpx.get(f"{base}/v1/collections/notes").json()["document_list"]}
    assert names == {"rivers.md", "towers.txt"}

    bad = tmp_path / "photo.txt"
    bad.write_bytes(b"\x00\x01\x02" * 20)
    page.set_input_files("#upload-files", str(bad))
    page.click("#add-documents button[type=submit]")
    expect(page.locator(".job").first).to_contain_text("photo.txt")  # the server's 415 message
    expect(page.locator(".job").first).to_have_attribute("data-state", "failed")
    shots.take(page, "03-ingested")


def test_ask_streams_the_answer_with_citations(console: Console, base: str, shots: Shots) -> None:
    page = console.page
    page.fill("#ask-top-k", "2")
    # Record each state the answer passes through, to see tokens arrive before the end.
    page.evaluate(
        """() => {
          window.answerStates = [];
          new MutationObserver((changes) => {
            for (const c of changes) {
              if (c.target.dataset?.state) window.answerStates.push(c.target.dataset.state);
            }
          }).observe(document.getElementById('answer-slot'),
                     {subtree: true, attributes: true, attributeFilter: ['data-state']});
        }"""
    )
    body = ask(page, "Where does the Nile flow into?", mode="cacheblend")
    assert body["stream"] is True and body["collection"] == "notes" and body["top_k"] == 2
    assert body["blend"] == {"mode": "cacheblend", "ratio": 0.15} and "selection" not in body
    states: list[str] = page.evaluate("window.answerStates")
    assert "streaming" in states and states[-1] == "done", states
    answer = page.locator("#answer-slot .answer-text").inner_text()
    assert answer.strip()
    citations = page.locator("#answer-slot .citation")
    assert citations.count() >= 1
    expect(citations.first).to_contain_text("rivers.md")
    numbers = usage(page)
    assert int(numbers["prompt_tokens"]) > 20 and int(numbers["cached_tokens"]) > 0, numbers
    for key in ("retrieve_ms", "kv_fetch_ms", "prefill_ms", "ttft_ms", "total_ms"):
        assert numbers[key].endswith(" ms"), (key, numbers)
    shots.take(page, "04-answer")

    citations.first.click()
    expect(page.locator("#document-title")).to_have_text("rivers.md")
    expect(page.locator("#document-title")).to_be_focused()
    # The server's own first hit for the question: the page must mark exactly its span.
    query = {"query": "Where does the Nile flow into?", "collection": "notes", "top_k": 2}
    hit = httpx.post(f"{base}/v1/retrieve", json=query).json()["chunks"][0]
    doc = httpx.get(f"{base}/v1/collections/notes/documents/{hit['doc_id']}").json()
    marked = "".join(page.locator("#document-text mark").all_inner_texts())
    assert marked == doc["text"][hit["start"] : hit["end"]] and "Mediterranean" in marked
    expect(page.locator("#document-meta")).to_contain_text(f"characters {hit['start']}–{hit['end']}")
    assert page.locator("#document-text span.chunk").count() >= 1  # the other chunks, unmarked
    shots.take(page, "05-citation")


def test_cache_panel_moves_after_a_second_question(console: Console, shots: Shots) -> None:
    page = console.page
    samples = int(page.get_attribute("#cache-panel", "data-samples") or 0)
    expect(page.locator("#cache-panel")).not_to_have_attribute("data-samples", str(samples), timeout=10_000)
    before = cache_numbers(page)
    ask(page, "Which tower was finished in 1889?", mode="reuse")
    page.wait_for_function(
        "(old) => document.querySelector('#cache-tokens [data-key=prompt_tokens]').textContent !== old",
        arg=before["tokens.prompt_tokens"],
        timeout=10_000,
    )
    after = cache_numbers(page)
    assert int(after["tokens.prompt_tokens"]) > int(before["tokens.prompt_tokens"]), (before, after)
    assert int(after["memory.hits"]) > int(before["memory.hits"]), (before, after)
    assert page.locator("#chart-rates polyline").count() >= 1
    assert page.locator("#chart-bytes polyline").count() >= 1
    page.locator("#cache-panel").scroll_into_view_if_needed()
    shots.take(page, "06-cache")


def test_side_by_side_compare_with_full(console: Console, shots: Shots) -> None:
    page = console.page
    page.fill("#ask-query", "Where is the Eiffel Tower?")
    page.select_option("#ask-mode", "cachecraft")
    with page.expect_request(lambda r: r.url.endswith("/generate")) as first:
        page.click("#compare-button")
    expect(page.locator("#compare-results")).to_have_attribute(
        "data-state", "done", timeout=ANSWER_TIMEOUT_MS
    )
    assert sent_body(first.value)["blend"] == {"mode": "full"}
    for column in ("#compare-full", "#compare-mode"):
        assert page.locator(f"{column} .answer-text").inner_text().strip()
        assert usage(page, column)["ttft_ms"].endswith(" ms")
    assert int(usage(page, "#compare-full")["cached_tokens"]) == 0
    assert int(usage(page, "#compare-mode")["cached_tokens"]) > 0
    expect(page.locator("#compare-summary")).to_contain_text("TTFT full")
    page.locator("#compare-results").scroll_into_view_if_needed()
    shots.take(page, "07-compare")


def test_corag_selection_is_sent_only_when_chosen_and_a_refusal_is_shown(console: Console, base: str) -> None:
    page = console.page
    body = ask(page, "Where does the Nile flow into?", mode="cacheblend", selection="corag")
    assert body["selection"] == {"method": "corag"}
    expect(page.locator("#answer-slot .selection-report")).to_contain_text("Selection corag")
    assert usage(page)["select_ms"].endswith(" ms")

    page.fill("#ask-budget", "2000000")  # over the server's cap: refused with a 422
    with page.expect_request(lambda r: r.url.endswith("/generate")) as sent:
        page.click("#ask-submit")
    body = sent_body(sent.value)
    assert body["selection"] == {"method": "corag", "budget": 2000000}
    reply = httpx.post(f"{base}/generate", json={**body, "stream": False}, timeout=90)
    assert reply.status_code == 422, reply.text
    expect(page.locator("#ask-error")).to_have_text(reply.json()["error"]["message"])
    expect(page.locator("#answer-slot .answer")).to_have_attribute("data-state", "failed")
    page.fill("#ask-budget", "")
    page.select_option("#ask-selection", "topk")
    expect(page.locator("#ask-budget")).to_be_disabled()


def test_metrics_parser_reads_what_prometheus_client_reads(console: Console, base: str) -> None:
    text = httpx.get(f"{base}/metrics").text
    parsed: list[dict[str, Any]] = console.page.evaluate(
        "async (text) => (await import('/console/metrics.js')).parsePrometheus(text)", text
    )
    ours = {(s["name"], tuple(sorted(s["labels"].items()))): s["value"] for s in parsed}
    theirs = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if math.isfinite(s.value)
    }
    assert theirs and all(ours[key] == pytest.approx(value) for key, value in theirs.items())
    assert any(name == "ragblend_kv_hits_total" for name, _ in ours)


def test_phone_width_has_no_horizontal_scroll(console: Console, shots: Shots) -> None:
    page = console.page
    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    assert horizontal_overflow(page) == 0
    for section in ("#collections-panel", "#ask-panel", "#cache-panel", "#answer", "#document-view"):
        box = page.locator(section).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], section
    shots.take(page, "08-phone")


def test_delete_a_collection(console: Console, base: str) -> None:
    page = console.page
    page.fill("#collection-name", "scratch")
    page.press("#collection-name", "Enter")
    expect(page.locator("#collection-list li[data-name=scratch]")).to_be_visible()
    page.once("dialog", lambda d: d.dismiss())  # "Cancel" keeps it
    page.click("[aria-label='Delete collection scratch']")
    expect(page.locator("#collection-list li[data-name=scratch]")).to_be_visible()
    page.once("dialog", lambda d: d.accept())
    page.click("[aria-label='Delete collection scratch']")
    expect(page.locator("#collection-list li[data-name=scratch]")).to_have_count(0)
    assert httpx.get(f"{base}/v1/collections/scratch").status_code == 404
    expect(page.locator("#collections-message")).to_have_text("Deleted collection scratch.")
