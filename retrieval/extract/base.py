"""What extracting a file gives (its text, and where its pages start) and the limits it runs under.

Rules every format's extractor keeps:

- The text it returns is the document's text: chunks are slices of exactly this string, so their
  offsets are offsets in it. Nothing is rewritten after extraction.
- A paged format (PDF) returns `page_starts`: the offset in the text where each page begins, one per
  page in order (a page without text starts where the next one does). Other formats return None.
- A file that cannot be read (encrypted, corrupt, over a limit, no text in it) raises InvalidDocument
  with a message that names the file; nothing else is raised for bad input.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PAGE_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class ExtractLimits:
    max_bytes: int = 20_000_000  # per file, before extraction
    max_pages: int = 500  # pages of a PDF
    max_chars: int = 1_000_000  # characters of extracted text
    ocr: bool = True  # OCR pages without a text layer when tesseract is installed
    ocr_timeout_s: float = 120.0  # per page
    # pages read by OCR per file: OCR takes seconds a page, and the upload waits for it
    max_ocr_pages: int = 10


@dataclass(frozen=True)
class Extracted:
    text: str
    format: str  # "text", "markdown", "csv", "html", "docx" or "pdf"
    page_starts: tuple[int, ...] | None = None

    @property
    def pages(self) -> int | None:
        return None if self.page_starts is None else len(self.page_starts)


# (file name, bytes, limits) -> Extracted
Extractor = Callable[[str, bytes, ExtractLimits], Extracted]


def clean(text: str) -> str:
    """Line ends as \\n, and no control characters but tab, newline and form feed (PDF and DOCX
    text carries stray ones that would make the document look binary)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if ch in "\t\n\f" or unicodedata.category(ch) != "Cc")


def join_pages(pages: Sequence[str]) -> tuple[str, tuple[int, ...]]:
    """The pages' texts joined by a blank line, and the offset where each page starts (a page
    without text starts where the next page with text does, so no offset falls on it)."""
    starts: list[int] = []
    parts: list[str] = []
    at, pending = 0, 0  # pending: pages without text waiting for the next page's start
    for page in pages:
        if not page:
            pending += 1
            continue
        if parts:
            parts.append(PAGE_SEPARATOR)
            at += len(PAGE_SEPARATOR)
        starts.extend([at] * (pending + 1))
        pending = 0
        parts.append(page)
        at += len(page)
    starts.extend([at] * pending)
    return "".join(parts), tuple(starts)
