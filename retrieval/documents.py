"""Checking what may become a document: text only, not empty, not too large (files are read into
text by retrieval/extract)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from retrieval.errors import InvalidDocument


@dataclass(frozen=True)
class NewDocument:
    """A document to ingest: its name and text, where its pages start (a paged file), or why its
    file could not be read (then it fails alone: the job reports it, the others are ingested)."""

    name: str
    text: str = ""
    page_starts: tuple[int, ...] | None = None
    error: str | None = None


# share of control characters (other than tab, newline, carriage return, form feed) that marks
# text as binary data decoded by accident
_MAX_CONTROL_SHARE = 0.01


def check_text(name: str, text: str, max_chars: int) -> str:
    """`text` if it can be a document; raises InvalidDocument (naming `name`) otherwise."""
    if len(text) > max_chars:
        raise InvalidDocument(f"document {name!r}: {len(text)} characters, the limit is {max_chars}", 413)
    if not text.strip():
        raise InvalidDocument(f"document {name!r} is empty")
    if "\x00" in text:
        raise InvalidDocument(f"document {name!r} looks binary (it contains NUL characters)", 415)
    sample = text[:100_000]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f")
    if controls > _MAX_CONTROL_SHARE * len(sample):
        raise InvalidDocument(f"document {name!r} looks binary ({controls} control characters)", 415)
    return text
