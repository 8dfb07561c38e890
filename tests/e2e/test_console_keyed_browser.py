"""The web console on a server that requires API keys, at phone width, driven by the keyboard alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from server.api_keys import hash_key
from tests.e2e.browser import PHONE, Console, Shots, chromium, horizontal_overflow, open_console, tab_to
from tests.e2e.console_page import ANSWER_TIMEOUT_MS, sent_body, usage
from tests.e2e.server_process import running_server

KEY = "sk-console-key-0001"
DOCUMENTS = (
    "The Nile flows north through Egypt into the Mediterranean Sea.\n---\n"
    "Mount Everest is the highest mountain on Earth."
)


@pytest.fixture(scope="module")
def base(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("console-keyed")
    env = {
        "RAGBLEND_MODEL": str(model_dir),
        "RAGBLEND_DATA_DIR": str(tmp / "data"),
        "RAGBLEND_NUM_THREADS": "2",
        "RAGBLEND_MAX_TOKENS_LIMIT": "64",
        "RAGBLEND_KV_DISK": "false",
        "RAGBLEND_API_KEYS": json.dumps([{"name": "console", "sha256": hash_key(KEY), "tenant": "t1"}]),
    }
    with running_server(env, tmp / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def console(base: str) -> Iterator[Console]:
    browser: Browser
    with chromium() as browser:
        c = open_console(browser, base, viewport=PHONE)
        yield c
        assert c.errors == [], c.errors


@pytest.fixture(scope="module")
def shots(artifacts_dir: Path) -> Shots:
    return Shots(artifacts_dir, "keyed")


def test_the_page_is_public_and_the_api_is_not(base: str) -> None:
    for path in ("/", "/console/app.js", "/console/style.css"):
        assert httpx.get(f"{base}{path}").status_code == 200, path
    for path in ("/metrics", "/v1/collections"):
        r = httpx.get(f"{base}{path}")
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"], path


def test_the_page_asks_for_a_key_and_keeps_it_in_the_session(console: Console, shots: Shots) -> None:
    page = console.page
    dialog = page.locator("#key-dialog")
    expect(dialog).to_have_attribute("open", "")
    expect(page.locator("#key-dialog-reason")).to_contain_text("missing API key")
    expect(page.locator("#key-input")).to_be_focused()
    shots.take(page, "01-key-prompt", full_page=False)

    page.keyboard.type("sk-wrong")
    page.keyboard.press("Enter")
    expect(page.locator("#key-dialog-reason")).to_contain_text("invalid API key")
    expect(dialog).to_have_attribute("open", "")
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    expect(dialog).not_to_have_attribute("open", "")
    expect(page.locator("#collections-message")).to_contain_text("No collections yet")
    expect(page.locator("#cache-status")).to_contain_text("Updated", timeout=10_000)
    assert page.evaluate("sessionStorage.getItem('ragblend.apiKey')") == KEY
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    page.reload()  # the same tab's session keeps it: no second prompt
    expect(page.locator("#collections-message")).to_contain_text("No collections yet")
    expect(dialog).not_to_have_attribute("open", "")


def test_keyboard_only_ask_at_phone_width(console: Console, shots: Shots) -> None:
    page = console.page
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#ask-panel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("input[name=source][value=collection]")).to_be_focused()
    page.keyboard.press("ArrowRight")  # radio group: the arrow picks "pasted documents"
    expect(page.locator("input[name=source][value=documents]")).to_be_checked()
    tab_to(page, "#ask-documents")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline  # a visible focus ring
    page.keyboard.type(DOCUMENTS)
    tab_to(page, "#ask-query")
    page.keyboard.type("Where does the Nile flow?")
    tab_to(page, "#ask-max-tokens")
    page.keyboard.press("Control+A")
    page.keyboard.type("8")
    with page.expect_request(lambda r: r.url.endswith("/generate")) as sent:
        page.keyboard.press("Enter")  # submits the form
    body = sent_body(sent.value)
    assert body["documents"] == [d.strip() for d in DOCUMENTS.split("---")] and body["max_tokens"] == 8
    assert sent.value.headers["authorization"] == f"Bearer {KEY}"
    answer = page.locator("#answer-slot .answer")
    expect(answer).to_have_attribute("data-state", "done", timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#answer-slot .answer-text").inner_text().strip()
    expect(page.locator("#answer-slot .citations")).to_contain_text("documents from the request")
    assert int(usage(page)["prompt_tokens"]) > 20
    assert horizontal_overflow(page) == 0
    shots.take(page, "02-keyboard-phone")


def test_stop_cancels_a_streaming_answer(console: Console, base: str) -> None:
    page = console.page
    page.fill("#ask-max-tokens", "64")
    page.click("#ask-submit")
    answer = page.locator("#answer-slot .answer")
    expect(answer).to_have_attribute("data-state", "streaming", timeout=ANSWER_TIMEOUT_MS)
    page.click("#stop-button")
    expect(answer).to_have_attribute("data-state", "failed")
    expect(page.locator("#ask-error")).to_have_text("Stopped.")
    expect(page.locator("#ask-submit")).to_be_enabled()
    # The server let the generation go: nothing keeps running once the stream is closed.
    headers = {"Authorization": f"Bearer {KEY}"}
    for _ in range(50):
        if httpx.get(f"{base}/ready", headers=headers).json()["queue"]["running"] == 0:
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("the stopped generation is still running")


def test_forgetting_the_key_stops_the_cache_panel_without_prompting(console: Console) -> None:
    page = console.page
    page.click("#forget-key")
    assert page.evaluate("sessionStorage.getItem('ragblend.apiKey')") is None
    expect(page.locator("#collections-message")).to_contain_text("Key forgotten")
    expect(page.locator("#cache-status")).to_contain_text("Enter an API key", timeout=10_000)
    page.wait_for_timeout(2500)  # two more polls: a background poll never opens the dialog
    expect(page.locator("#key-dialog")).not_to_have_attribute("open", "")
    page.click("#key-button")
    expect(page.locator("#key-dialog")).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(page.locator("#key-dialog")).not_to_have_attribute("open", "")
