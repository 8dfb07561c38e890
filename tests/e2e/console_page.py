"""Steps and readings on the console page that several browser tests share."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, Request, expect

ANSWER_TIMEOUT_MS = 90_000


def sent_body(request: Request) -> dict[str, Any]:
    """The JSON body the page sent."""
    body = request.post_data_json
    assert isinstance(body, dict), request.post_data
    return body


def ask(page: Page, question: str, **fields: str) -> dict[str, Any]:
    """Fill the Ask form, submit it, wait for the answer to finish; the /generate body it sent."""
    page.fill("#ask-query", question)
    page.fill("#ask-max-tokens", fields.pop("max_tokens", "8"))
    for selector, value in fields.items():
        page.select_option(f"#ask-{selector}", value)
    with page.expect_request(lambda r: r.url.endswith("/generate")) as sent:
        page.click("#ask-submit")
    expect(page.locator("#answer-slot .answer")).to_have_attribute(
        "data-state", "done", timeout=ANSWER_TIMEOUT_MS
    )
    return sent_body(sent.value)


def stats(page: Page, dl: str) -> dict[str, str]:
    """A <dl> of the page as {data-key: shown value}."""
    cells = page.locator(f"{dl} dd").all()
    return {cell.get_attribute("data-key") or "": cell.inner_text() for cell in cells}


def usage(page: Page, scope: str = "#answer-slot") -> dict[str, str]:
    return stats(page, f"{scope} .usage")


def cache_numbers(page: Page) -> dict[str, str]:
    """The cache panel's token counters and each tier's hits, as the page shows them."""
    out = {f"tokens.{k}": v for k, v in stats(page, "#cache-tokens").items()}
    for row in page.locator("#cache-tiers tbody tr").all():
        out[f"{row.get_attribute('data-tier')}.hits"] = row.locator("[data-key=hits]").inner_text()
    return out
