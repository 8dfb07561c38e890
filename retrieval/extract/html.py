"""HTML: the page's main text through trafilatura, without scripts, styles, navigation, headers,
footers or comments (boilerplate removal), keeping headings, lists and tables as text."""

from __future__ import annotations

import trafilatura

from retrieval.errors import InvalidDocument
from retrieval.extract.base import Extracted, ExtractLimits
from retrieval.extract.text import decode


def extract_html(name: str, data: bytes, limits: ExtractLimits) -> Extracted:
    try:
        page = decode(name, data, limits)
    except InvalidDocument:
        page = data.decode("latin-1")  # trafilatura honours the page's own charset declaration
    text = trafilatura.extract(
        page, include_comments=False, include_tables=True, include_links=False, favor_recall=True
    )
    if not text or not text.strip():
        raise InvalidDocument(f"file {name!r}: no main text found in the HTML page", 422)
    return Extracted(text, "html")
