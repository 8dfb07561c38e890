"""Headless Chromium (the system's `chromium` package) driven by Playwright, for the console tests.

Playwright's own browser download is not used: the tests launch the Debian build, which `make test`
installs. A missing browser fails the tests loudly rather than skipping them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP: ViewportSize = {"width": 1280, "height": 1000}
PHONE: ViewportSize = {"width": 390, "height": 844}
# The JS on the page polls /metrics this often in the tests (the default is 3 s).
POLL_MS = 1000


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("no chromium on PATH: `make chromium` (apt-get install chromium) installs it")
    return path


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Shots:
    """Numbered screenshots of each step, under test-artifacts/console/."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.dir = root / "console"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix

    def take(self, page: Page, name: str, full_page: bool = True) -> Path:
        path = self.dir / f"{self.prefix}-{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path


@dataclass
class Console:
    """The console open in its own browser context, and the script errors it has raised so far."""

    page: Page
    errors: list[str] = field(default_factory=list)


def open_console(browser: Browser, base: str, viewport: ViewportSize = DESKTOP) -> Console:
    """A fresh context (its own sessionStorage) on the console page."""
    page = browser.new_context(viewport=viewport).new_page()
    console = Console(page)
    page.on("pageerror", lambda exc: console.errors.append(str(exc)))
    page.goto(f"{base}/?poll_ms={POLL_MS}")
    return console


def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the window (0: no horizontal scroll)."""
    width: int = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth"
    )
    return width


def tab_to(page: Page, selector: str, limit: int = 40) -> None:
    """Press Tab until `selector` has the focus (fails after `limit` presses)."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} not reached with {limit} presses of Tab")
